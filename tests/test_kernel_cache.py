"""numba's cache directory follows the code that uses numba, so no kernel runs against an old callee."""

from __future__ import annotations

import shutil
from pathlib import Path

import numba
import pytest

from recsys import _kernel_cache


def test_the_kernels_cache_in_a_directory_named_after_their_code() -> None:
    assert Path(numba.config.CACHE_DIR).name == f"numba-{_kernel_cache.kernel_code_digest()}"


def test_a_change_to_any_kernel_module_moves_the_cache_and_others_do_not(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "recsys"
    shutil.copytree(Path(_kernel_cache.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(_kernel_cache, "_PACKAGE", package)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)  # restored after the test
    assert b"numba" not in (package / "cli.py").read_bytes() and b"numba" in (package / "ranking.py").read_bytes()
    first = _kernel_cache.configure()
    first.mkdir(parents=True)
    with (package / "cli.py").open("a") as cli:  # no kernel: same directory
        cli.write("\n# a comment\n")
    assert _kernel_cache.configure() == first
    with (package / "ranking.py").open("a") as ranking:  # a callee of engine._select: a new directory
        ranking.write("\n# a comment\n")
    second = _kernel_cache.configure()
    assert second != first and second.parent == first.parent == package / "__pycache__"
    assert numba.config.CACHE_DIR == str(second)
    assert not first.exists(), "the old version's kernels are removed"


def test_a_user_cache_directory_holds_the_versioned_one_and_is_not_pruned(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)
    other = tmp_path / "numba-0000000000000000"
    other.mkdir()
    directory = _kernel_cache.configure()
    assert directory.parent == tmp_path and numba.config.CACHE_DIR == str(directory)
    assert other.exists(), "a shared cache directory may serve other versions"
