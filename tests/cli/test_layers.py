"""The layers hold: core (recsys, except recsys.cli) <- training, serving <- recsys.cli (pyproject's import-linter
contracts)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint_imports, "lint-imports not installed (the dev extra)"
    result = subprocess.run([lint_imports, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_no_module_imports_itself_through_another() -> None:
    """No import cycle among the project's modules, type-checking imports included: for every import A -> B,
    no chain of imports leads from B back to A."""
    import grimp

    graph = grimp.build_graph("recsys", "training", "serving", "benchmarks")
    cycles = sorted({tuple(sorted((module, imported))) for module in graph.modules
                     for imported in graph.find_modules_directly_imported_by(module)
                     if graph.find_shortest_chain(importer=imported, imported=module)})
    assert cycles == [], f"import cycles between: {cycles}"
