"""Error headlines on real exceptions: one line, what went wrong and what to do; no staging token or
errno in it; the traceback and SQL in the folded details."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from studio.problems import clean, describe, error_markdown, problem_from_text, problem_markdown
from studio.tabs.datasets import stage_upload
from trainer.core.errors import DataError, RunDBError
from trainer.rundb import RunStore

TOKEN = "3f2a9c0d4e5b6a7f8091a2b3c4d5e6f7"


def raised(fn) -> BaseException:
    with pytest.raises(BaseException) as info:
        fn()
    return info.value


def test_a_missing_staged_video_names_the_file_and_the_fix(tmp_path: Path) -> None:
    staged = tmp_path / "ws" / "datasets" / ".staging" / TOKEN / "videos" / "x.mp4"
    exc = raised(lambda: staged.open("rb"))
    assert "[Errno 2]" in str(exc) and TOKEN in str(exc)  # what Python says
    problem = describe(exc)
    assert problem.headline == (
        "Video videos/x.mp4 not found: upload it together with the annotation file (or inside the zip)."
    )
    assert "Traceback" in problem.details and str(staged) in problem.details


def test_a_missing_model_folder_keeps_its_path(tmp_path: Path) -> None:
    exc = raised(lambda: os.listdir(tmp_path / "outputs" / "run" / "checkpoint-4"))
    assert describe(exc).headline == (
        f"Folder {tmp_path}/outputs/run/checkpoint-4 not found: "
        "check the path; it may have been moved or deleted."
    )


def test_disk_full_and_permission_errors() -> None:
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/ws/outputs/r/checkpoint-8/model.safetensors")
    assert describe(full).headline == "The disk is full: free some space in the workspace and try again."
    denied = PermissionError(
        errno.EACCES, os.strerror(errno.EACCES), f"/ws/datasets/.staging/{TOKEN}/a.jsonl"
    )
    assert (
        describe(denied).headline
        == "No permission to use a.jsonl: check the owner and permissions of the folder."
    )
    bare = OSError(errno.EIO, os.strerror(errno.EIO))
    assert describe(bare).headline == "Input/output error. Check the path and try again."


def test_a_duplicate_checkpoint_row_is_one_line_with_the_sql_folded(tmp_path: Path) -> None:
    with RunStore(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        run = store.create_run("r")
        store.add_checkpoint(run.id, 4, "/out/checkpoint-4", {})

        def insert_twice() -> None:
            # add_checkpoint updates a re-saved step, so write the clashing row as a second writer would.
            with store.session(write=True) as s:
                s.execute(
                    text(
                        "INSERT INTO checkpoints (run_id, step, path, created_at, metrics)"
                        " VALUES (:r, 4, 'x', 0, '{}')"
                    ),
                    {"r": run.id},
                )

        exc = raised(insert_twice)
    assert isinstance(exc, RunDBError) and "[SQL: INSERT" in str(exc)
    problem = describe(exc)
    assert problem.headline == (
        "The run database refused a row that clashes with a stored one "
        "(UNIQUE constraint failed: checkpoints.run_id, checkpoints.step): refresh and retry."
    )
    assert "SQL: INSERT INTO checkpoints" in problem.details and "IntegrityError" in problem.details


def test_a_locked_database_says_try_again(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = create_engine(f"sqlite:///{db}", connect_args={"timeout": 0})
    try:
        with engine.connect() as conn:
            exc = raised(lambda: conn.execute(text("SELECT * FROM t")))
    finally:
        engine.dispose()
        holder.close()
    assert isinstance(exc, OperationalError)
    assert describe(exc).headline == (
        "The run database is busy (another process is writing): try again in a moment."
    )


def test_our_own_errors_keep_their_message_without_plumbing(tmp_path: Path) -> None:
    staging = tmp_path / "datasets" / ".staging" / TOKEN
    bad_zip = tmp_path / "upload.zip"
    bad_zip.write_text("not a zip")
    exc = raised(lambda: stage_upload([bad_zip], staging))
    assert isinstance(exc, DataError)
    problem = describe(exc)
    assert problem.headline == "upload.zip: not a valid zip file (File is not a zip file)"
    assert "Traceback" in problem.details  # it wraps zipfile's error
    user_mistake = describe(DataError("dataset name 'a b' has a space; use letters, digits, _ . -"))
    assert user_mistake == type(user_mistake)(
        "dataset name 'a b' has a space; use letters, digits, _ . -", ""
    )


def test_an_unexpected_error_names_its_type() -> None:
    problem = describe(raised(lambda: int("twelve")))
    assert problem.headline == (
        "Unexpected error (ValueError: invalid literal for int() with base 10: 'twelve'): see the details."
    )


def test_stored_error_text_is_cleaned_and_its_traceback_folded() -> None:
    message = f"[Errno 2] No such file or directory: '/ws/datasets/.staging/{TOKEN}/videos/x.mp4'"
    assert clean(message) == "videos/x.mp4 not found"
    problem = problem_from_text(message + "\nwhile decoding", "Traceback (most recent call last):\n  ...")
    assert problem.headline == "videos/x.mp4 not found"
    assert message in problem.details and problem.details.endswith("...")


def test_markdown_folds_the_details_and_escapes_html() -> None:
    assert problem_markdown(problem_from_text("bad <answer> tag")) == "bad &lt;answer&gt; tag"
    page = error_markdown(raised(lambda: int("x")), "Not registered")
    head, details = page.split("\n\n", 1)
    assert head.startswith("**Not registered:** Unexpected error (ValueError")
    assert details.startswith("<details><summary>Details</summary>") and details.endswith("</details>")
    assert "Traceback" in details and "\n" not in head


def test_a_typo_in_the_form_has_no_traceback_to_unfold() -> None:
    from studio import forms
    from trainer.core.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        forms.config_from_values({"max_steps": "ten"})
    problem = describe(caught.value)
    assert problem.headline == "max_steps: expected an integer, got 'ten'"
    assert problem.details == ""
    assert "<details>" not in error_markdown(caught.value, "Check")
