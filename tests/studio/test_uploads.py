"""Dataset uploads: what is refused (zip slip, links, non-video files, size) and the per-record report."""

from __future__ import annotations

import json
import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from studio.tabs.datasets import (
    UploadLimits,
    clean_stale_staging,
    error_rows,
    extract_zip,
    record_html,
    report_markdown,
    stage_upload,
)
from trainer.core.errors import DataError
from trainer.data import MCQRecord, validate_file

VIDEO = "videos/m_0001.mp4"


def record(rid: str, video: str, answer: str = "D") -> dict:
    question = "<video>\nWhich way does the square move?\nOptions:\n(A) left\n(B) right\n(C) up\n(D) down"
    return {
        "id": rid,
        "video": video,
        "conversations": [
            {"from": "human", "value": question},
            {"from": "gpt", "value": f"<think>x</think> <answer>({answer}) down</answer>"},
        ],
    }


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def make_zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


@pytest.fixture
def video_bytes(synthetic_dir: Path) -> bytes:
    return (synthetic_dir / VIDEO).read_bytes()


def test_zip_with_folder_layout_is_staged_and_validated(tmp_path: Path, video_bytes: bytes) -> None:
    lines = [record("q1", VIDEO), record("q2", "videos/missing.mp4"), record("q3", VIDEO, answer="E")]
    annotation = "".join(json.dumps(r) + "\n" for r in lines).encode()
    archive = make_zip(tmp_path / "up.zip", {"mine/train.jsonl": annotation, f"mine/{VIDEO}": video_bytes})
    dest = tmp_path / "stage"
    found = stage_upload([archive], dest)
    assert found == dest / "mine" / "train.jsonl"
    report = validate_file(found)
    assert [r.id for r in report.records] == ["q1"]
    rows = error_rows(report)
    assert [row[:2] for row in rows] == [["line 2", "q2"], ["line 3", "q3"]]
    assert rows[0][2].startswith("video not found:")
    assert report_markdown(report).startswith("**3 records: 1 usable, 2 with errors** (think mode)")


def test_zip_slip_entry_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "evil.zip", {"train.jsonl": b"{}\n", "../../escaped.mp4": b"x"})
    dest = tmp_path / "stage"
    with pytest.raises(DataError, match=r"evil.zip: entry '../../escaped.mp4' would be written outside"):
        extract_zip(archive, dest)
    assert not (tmp_path / "escaped.mp4").exists()
    assert not dest.exists() or list(dest.iterdir()) == []


def test_absolute_zip_entry_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "abs.zip", {"/etc/evil.mp4": b"x"})
    with pytest.raises(DataError, match="would be written outside the dataset folder"):
        extract_zip(archive, tmp_path / "stage")


def test_symlink_in_zip_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "link.zip", {"train.jsonl": b"{}\n"}, links={"videos/a.mp4": "/etc/passwd"})
    with pytest.raises(DataError, match=r"entry 'videos/a.mp4' is a symbolic link"):
        stage_upload([archive], tmp_path / "stage")


def test_uploaded_symlink_is_refused(tmp_path: Path) -> None:
    target = write_jsonl(tmp_path / "train.jsonl", [record("q1", VIDEO)])
    link = tmp_path / "link.jsonl"
    os.symlink(target, link)
    with pytest.raises(DataError, match="link.jsonl: symbolic links are not accepted"):
        stage_upload([link], tmp_path / "stage")


def test_non_video_file_in_video_folder_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "up.zip", {"train.jsonl": b"{}\n", "videos/run.sh": b"rm -rf /"})
    with pytest.raises(DataError, match=r"videos/run.sh: not a video or image file"):
        stage_upload([archive], tmp_path / "stage")


def test_loose_non_video_file_is_refused(tmp_path: Path) -> None:
    ann = write_jsonl(tmp_path / "train.jsonl", [record("q1", VIDEO)])
    exe = tmp_path / "notes.txt"
    exe.write_text("hello")
    with pytest.raises(DataError, match=r"notes.txt: not a video or image file"):
        stage_upload([ann, exe], tmp_path / "stage")


def test_size_limit_counts_uncompressed_zip_bytes(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "bomb.zip", {"train.jsonl": b"{}\n", "videos/a.mp4": b"\0" * 5000})
    assert archive.stat().st_size < 1000  # compressed small, expands past the limit
    with pytest.raises(DataError, match=r"bomb.zip is 4.9 KiB, over the upload limit of 3.9 KiB"):
        stage_upload([archive], tmp_path / "stage", UploadLimits(max_total_bytes=4000))


def test_size_limit_on_loose_files(tmp_path: Path, video_bytes: bytes) -> None:
    ann = write_jsonl(tmp_path / "train.jsonl", [record("q1", VIDEO)])
    video = tmp_path / "m_0001.mp4"
    video.write_bytes(video_bytes)
    with pytest.raises(DataError, match=r"the upload is [\d.]+ KiB, over the upload limit of 100 B"):
        stage_upload([ann, video], tmp_path / "stage", UploadLimits(max_total_bytes=100))


def test_loose_videos_go_where_the_records_expect_them(tmp_path: Path, video_bytes: bytes) -> None:
    ann = write_jsonl(tmp_path / "train.jsonl", [record("q1", VIDEO), record("q2", "flat.mp4")])
    (tmp_path / "up").mkdir()
    for name in ("m_0001.mp4", "flat.mp4"):
        (tmp_path / "up" / name).write_bytes(video_bytes)
    dest = tmp_path / "stage"
    found = stage_upload([ann, tmp_path / "up" / "m_0001.mp4", tmp_path / "up" / "flat.mp4"], dest)
    assert (dest / VIDEO).is_file() and (dest / "flat.mp4").is_file()
    assert [r.id for r in validate_file(found).records] == ["q1", "q2"]


def test_exactly_one_annotation_and_zip_alone(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [record("q1", VIDEO)])
    b = write_jsonl(tmp_path / "b.jsonl", [record("q1", VIDEO)])
    with pytest.raises(DataError, match="upload exactly one annotation file .* got a.jsonl, b.jsonl"):
        stage_upload([a, b], tmp_path / "s1")
    archive = make_zip(tmp_path / "up.zip", {"train.jsonl": b"{}\n"})
    with pytest.raises(DataError, match=r"upload the zip \(up.zip\) alone"):
        stage_upload([archive, a], tmp_path / "s2")
    with pytest.raises(DataError, match="not a valid zip file"):
        stage_upload([shutil.copyfile(a, tmp_path / "fake.zip")], tmp_path / "s3")


def test_record_html_highlights_the_correct_option_and_escapes(tmp_path: Path, video_bytes: bytes) -> None:
    (tmp_path / "videos").mkdir()
    (tmp_path / VIDEO).write_bytes(video_bytes)
    (rec,) = validate_file(write_jsonl(tmp_path / "train.jsonl", [record("q1", VIDEO)])).records
    page = record_html(rec)
    assert page.count("&#10003; correct") == 1
    assert "(D) down &#10003; correct" in page
    hostile = MCQRecord.from_dict({**rec.to_dict(), "question": "<script>alert(1)</script>"})
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in record_html(hostile)
    free_form = MCQRecord.from_dict(
        {**rec.to_dict(), "options": {}, "answer": "it <b>bounces</b>", "problem_type": "free-form"}
    )
    page = record_html(free_form)
    assert "free-form - reference answer: <b>it &lt;b&gt;bounces&lt;/b&gt;</b>" in page
    assert "vgrpo-option" not in page


def test_only_staging_folders_older_than_a_day_are_cleaned(tmp_path: Path) -> None:
    staging = tmp_path / "datasets" / ".staging"
    now = 1_000_000.0
    ages_h = {"abandoned": 30, "just_over": 24.1, "fresh": 2}
    for name, hours in ages_h.items():
        (staging / name / "videos").mkdir(parents=True)
        (staging / name / "videos" / "x.mp4").write_bytes(b"v")
        os.utime(staging / name, (now - hours * 3600,) * 2)
    (staging / "stray.txt").write_text("a file, not an upload")
    os.utime(staging / "stray.txt", (now - 48 * 3600,) * 2)
    removed = clean_stale_staging(tmp_path / "datasets", now=now)
    assert sorted(p.name for p in removed) == ["abandoned", "just_over"]
    assert sorted(p.name for p in staging.iterdir()) == ["fresh", "stray.txt"]
    assert clean_stale_staging(tmp_path / "nothing_here", now=now) == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # gradio's loops
def test_registering_says_what_is_left_out_and_nothing_reads_it_again(
    tmp_path: Path, video_bytes: bytes
) -> None:
    """Issue 23: `mixed.jsonl` registered as "3 usable records", then Check and Evaluate (which
    only check that videos exist) failed on its corrupt video. The Register button's message says
    the bad records are left out; the preview, Check's loading and the file agree."""
    from studio.context import StudioContext
    from studio.tabs.datasets.tab import LEFT_OUT, DatasetsHandlers
    from trainer.data import load_dataset_use

    up = tmp_path / "up"
    up.mkdir()
    (up / "good.mp4").write_bytes(video_bytes)
    (up / "corrupt.mp4").write_bytes(b"\x00garbage, not a video" * 50)
    (up / "empty.mp4").touch()
    lines = [record("q1", "good.mp4"), record("q_bad", "corrupt.mp4"), record("q2", "good.mp4"),
             record("q_empty", "empty.mp4"), record("q3", "good.mp4")]  # fmt: skip
    annotation = write_jsonl(up / "mixed.jsonl", lines)
    original = annotation.read_bytes()
    ctx = StudioContext(tmp_path / "ws", f"sqlite:///{tmp_path / 'runs.db'}")
    handlers = DatasetsHandlers(ctx, UploadLimits())
    files = [str(annotation), *(str(up / n) for n in ("good.mp4", "corrupt.mp4", "empty.mp4"))]
    note, state, report_md, *_ = handlers.on_validate(files, "mixed", None)
    assert report_md.startswith("**5 records: 3 usable, 2 with errors**")

    message, *_ = handlers.on_register("mixed", state)
    assert "3 usable records" in message and LEFT_OUT.format(count=2) in message
    status, report_md, errors, items, *_ = handlers.on_preview("mixed")
    assert report_md.startswith("**5 records: 3 usable, 2 with errors**")
    assert [row[1] for row in errors] == ["q_bad", "q_empty"]
    assert errors[1][2].startswith("empty file (0 bytes):")
    assert [i["id"] for i in items] == ["q1", "q2", "q3"]
    # What Check reads (videos checked to exist only) is what was registered.
    assert [r.id for r in load_dataset_use("mixed", ctx.workspace, seed=0, check_videos=False)] == [
        "q1",
        "q2",
        "q3",
    ]
    assert (ctx.datasets_dir / "mixed" / "mixed.jsonl").read_bytes() == original


def test_a_refused_upload_is_deleted_and_the_limit_is_said_before_uploading(tmp_path: Path) -> None:
    from studio.context import StudioContext
    from studio.tabs.datasets.tab import DatasetsHandlers, build_layout

    ctx = StudioContext(tmp_path / "ws")
    uploaded = tmp_path / "gradio-tmp" / "big.jsonl"  # gradio's copy of what the browser sent
    uploaded.parent.mkdir()
    uploaded.write_text('{"id": "q"}\n' * 100)
    handlers = DatasetsHandlers(ctx, UploadLimits(max_total_bytes=1024))
    status, staged, *_ = handlers.on_validate([str(uploaded)], "big", None)
    assert "over the upload limit of 1.0 KiB" in status and staged is None
    assert not uploaded.exists()  # not left in gradio's temp folder
    from studio.tabs.datasets.staging import STAGING

    staging = ctx.datasets_dir / STAGING
    assert not staging.exists() or not any(staging.iterdir())  # nor half-staged in the workspace

    import gradio as gr

    with gr.Blocks():
        widgets = build_layout(UploadLimits(max_total_bytes=2 * 1024**3))
    assert widgets.upload.label == "Annotation file + videos, or one .zip of both (at most 2.0 GiB in all)"
