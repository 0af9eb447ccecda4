"""The compiled kernels live in one module, so numba's per-file cache never runs a kernel against an old
callee or constant; and importing the package configures nothing."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
from numba.core.registry import CPUDispatcher

import recsys
from recsys.query import kernels

PACKAGE = Path(recsys.__file__).resolve().parent


def test_only_the_kernels_module_uses_numba() -> None:
    users = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] == "numba" for name in names):
                users.append(path.relative_to(PACKAGE).as_posix())
    assert users == ["query/kernels.py"]


def test_every_kernel_reads_only_what_its_own_module_defines() -> None:
    """A kernel's globals (other kernels, constants, the feature layout) must be defined in recsys/query/kernels.py:
    one imported from another module would not invalidate the cache when that module changes."""
    dispatchers = [value for value in vars(kernels).values() if isinstance(value, CPUDispatcher)]
    assert len(dispatchers) >= 10
    for kernel in dispatchers:
        for name in kernel.py_func.__code__.co_names:
            value = vars(kernels).get(name)
            if value is None or isinstance(value, types.ModuleType):
                continue  # attributes, builtins, numpy/math
            origin = getattr(value, "py_func", value)
            module = getattr(origin, "__module__", None) or getattr(type(origin), "__module__", "")
            defined_here = module == kernels.__name__ or not module.startswith("recsys")
            assert defined_here, f"{kernel.py_func.__name__} reads {name} from {module}"
            if isinstance(value, (int, float, tuple)):
                assert name in _assigned_names(), f"{kernel.py_func.__name__} reads {name}, not assigned here"


def _assigned_names() -> set[str]:
    tree = ast.parse(Path(kernels.__file__).read_text())
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name):
                    names.add(leaf.id)
    return names


def test_importing_the_package_configures_and_deletes_nothing(tmp_path: Path) -> None:
    marker = PACKAGE / "__pycache__" / "numba-0000000000000000"  # what an old cache-versioning scheme pruned
    marker.mkdir(parents=True, exist_ok=True)
    try:
        code = ("import json, numba; before = numba.config.CACHE_DIR; import recsys, recsys.query.engine; "
                "print(json.dumps([before, numba.config.CACHE_DIR]))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
        before, after = json.loads(out.stdout.splitlines()[-1])
        assert before == after
        assert marker.exists()
    finally:
        marker.rmdir()


def test_importing_the_package_or_its_command_line_loads_no_engine(tmp_path: Path) -> None:
    """``import recsys`` and the command line stay cheap: faiss, numba and the layers above the core load only when
    an engine (or a command that needs one) is used; a public name still resolves from the package root."""
    heavy = ("faiss", "numba", "lightgbm", "implicit", "training.pipeline", "serving.app")
    code = ("import json, sys; import recsys, recsys.cli, recsys.state.store, recsys.model.registry; "
            f"before = [m for m in {heavy!r} if m in sys.modules]; "
            "engine = recsys.SubstituteEngine; "
            f"after = [m for m in {heavy!r} if m in sys.modules]; "
            "print(json.dumps([before, after, engine.__module__, sorted(set(recsys.__all__) - set(dir(recsys)))]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    before, after, module, missing = json.loads(out.stdout.splitlines()[-1])
    assert before == []
    assert {"faiss", "numba"} <= set(after) and module == "recsys.query.engine"
    assert missing == [], "every public name is listed by dir(recsys)"


def test_each_pair_signal_is_named_after_the_feature_it_feeds() -> None:
    from recsys.model.data import PAIR_SIGNALS
    from recsys.query.kernels import FEATURES, PAIR_FEATURES

    assert PAIR_SIGNALS == tuple(FEATURES[column] for column in PAIR_FEATURES)


def test_a_widened_query_keeps_its_group_then_the_parent_outside_the_group() -> None:
    """``widen`` against its definition in numpy: the group's candidates first, then the parent category's outside
    the group's range in their order (sorted from a range scan, by similarity from FAISS), flagged as widened."""
    rng = np.random.default_rng(0)
    for case in range(200):
        lo = int(rng.integers(0, 50))
        hi = lo + int(rng.integers(0, 20))
        group = np.sort(rng.choice(np.arange(lo, hi), size=min(int(rng.integers(0, 4)), hi - lo), replace=False))
        group_similarity = rng.random(len(group), dtype=np.float32)
        wide = rng.permutation(100)[:int(rng.integers(0, 100))].astype(np.int64)
        if case % 2:
            wide.sort()
        wide_similarity = rng.random(len(wide), dtype=np.float32)
        items, similarity, widened = kernels.widen(group.astype(np.int64), group_similarity, wide, wide_similarity,
                                                   lo, hi)
        outside = (wide < lo) | (wide >= hi)
        np.testing.assert_array_equal(items, np.concatenate([group, wide[outside]]))
        np.testing.assert_array_equal(similarity, np.concatenate([group_similarity, wide_similarity[outside]]))
        np.testing.assert_array_equal(widened, np.arange(len(items)) >= len(group))
        assert (items.dtype, similarity.dtype, widened.dtype) == (np.int64, np.float32, np.bool_)
