"""What the command line logs: our progress, not the libraries' chatter."""

from __future__ import annotations

import subprocess
import sys

from trainer.core.paths import REPO_ROOT


def test_opening_the_run_db_does_not_log_alembic_info(tmp_path) -> None:
    # Every trainer opens (and on first use creates) the run DB; alembic's INFO lines ("Context
    # impl SQLiteImpl.", "Will assume non-transactional DDL.") filled the log the Monitor shows.
    cmd = [sys.executable, "-m", "trainer.cli", "runs", "list", "--db", f"sqlite:///{tmp_path / 'runs.db'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "runs.db").is_file()  # the DB was created, so alembic did run its upgrade
    assert "Context impl" not in proc.stderr
    assert "Will assume" not in proc.stderr
