"""The layer rules of ``[tool.importlinter]`` in pyproject.toml hold, and the UI stays out of the engine.

`lint-imports` reads every import, including those inside functions, so the order core < data <
model < rollout < score < update < step | eval < run < cli, "rundb imports nothing of the engine"
and "the engine never imports the studio" are checked here and in `make lint`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from trainer.core.paths import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_import_contracts_are_kept() -> None:
    out = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], capture_output=True, text=True, cwd=REPO_ROOT, check=False
    )
    report = out.stdout + out.stderr
    assert out.returncode == 0, report
    assert "0 broken" in report and "3 kept" in report, report


def test_a_broken_layer_is_reported(tmp_path: Path) -> None:
    """The contracts can fail: a copy of the engine whose core imports the loop breaks the layers."""
    import shutil

    shutil.copytree(REPO_ROOT / "trainer", tmp_path / "trainer", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO_ROOT / "studio", tmp_path / "studio", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    errors = tmp_path / "trainer" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom trainer.run import loop  # noqa\n")
    out = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": ""},
        check=False,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "trainer.core.errors -> trainer.run.loop" in out.stdout


def test_importing_the_training_loop_loads_no_ui() -> None:
    code = (
        "import sys, trainer.run.loop, trainer.cli.train; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gradio', 'studio')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert out.stdout.strip() == "[]"


MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80


def test_no_file_over_500_lines_and_no_function_over_80() -> None:
    """STYLE.md's smells, measured: a file of the engine, the studio or the benchmarks over 500
    lines, or a function (docstring included) over 80; alembic migrations aside."""
    import ast

    too_long = []
    for root in ("trainer", "studio", "bench"):
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            text = path.read_text()
            where = path.relative_to(REPO_ROOT)
            if len(text.splitlines()) > MAX_FILE_LINES:
                too_long.append(f"{where}: {len(text.splitlines())} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        too_long.append(f"{where}:{node.lineno} {node.name}: {length} lines")
    assert too_long == []
