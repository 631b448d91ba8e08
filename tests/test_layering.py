"""The engine never depends on the UI: no module under trainer/ imports gradio or studio."""

from __future__ import annotations

import ast
import subprocess
import sys

from trainer.paths import REPO_ROOT

FORBIDDEN = ("gradio", "studio")


def _imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_trainer_module_imports_the_ui() -> None:
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(_imported_modules(path) & set(FORBIDDEN))
        for path in (REPO_ROOT / "trainer").rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    # trainer/cli/studio.py is the one bridge: `vgrpo studio` starts the app, importing it lazily.
    offenders.pop("trainer/cli/studio.py", None)
    assert offenders == {}


def test_importing_the_training_loop_loads_no_ui() -> None:
    code = (
        "import sys, trainer.loop, trainer.cli.train; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gradio', 'studio')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert out.stdout.strip() == "[]"
