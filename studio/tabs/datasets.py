"""Datasets tab: upload (annotation + videos, or one zip), validate, preview, register, delete.

An upload is first staged in ``<workspace>/datasets/.staging/<token>/`` and validated there; Register
moves it to ``<workspace>/datasets/<name>/``. Everything a user sends is checked before it is kept:
total size, zip entries that would land outside the folder (zip slip), symlinks, and files that
are neither the annotation nor media. Any problem is a message, never a crash.
"""

from __future__ import annotations

import html
import logging
import shutil
import stat
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from studio import choices, problems, text
from studio.context import StudioContext
from studio.live import Refresh
from trainer.core.errors import DataError, StudioError
from trainer.data import (
    MCQRecord,
    ValidationReport,
    list_datasets,
    register_dataset,
    unregister_dataset,
    validate_file,
)
from trainer.data.loading import iter_loaded
from trainer.data.prompts import mode_for_dataset
from trainer.data.registry import check_name

logger = logging.getLogger(__name__)

ANNOTATION_SUFFIXES = frozenset({".json", ".jsonl", ".csv"})
MEDIA_SUFFIXES = frozenset(
    {".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}
)
STAGING = ".staging"
# A staged upload nobody registered within a day was abandoned (a closed tab, a studio restart).
STALE_STAGING_S = 24 * 3600.0
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class UploadLimits:
    """What one upload may hold (a zip is measured by its uncompressed size, so a zip bomb is refused)."""

    max_total_bytes: int = 2 * 1024**3
    max_files: int = 20_000


DEFAULT_LIMITS = UploadLimits()


# ---- staging an upload (no Gradio here) ---------------------------------------------------------


def stage_upload(paths: list[Path], dest: Path, limits: UploadLimits = DEFAULT_LIMITS) -> Path:
    """Copy an upload into ``dest`` and return the annotation file's path there.

    ``paths`` is either one ``.zip`` (annotation + media, any folder layout) or one annotation
    file plus media files. Loose media are placed where the annotation's records expect them
    (``videos/x.mp4`` or ``x.mp4``). Raises DataError naming the offending file.
    """
    if not paths:
        raise DataError(text.NOTHING_UPLOADED)
    for p in paths:
        if p.is_symlink():
            raise DataError(f"{p.name}: symbolic links are not accepted")
    zips = [p for p in paths if p.suffix.lower() == ".zip"]
    if zips and len(paths) > 1:
        raise DataError(f"upload the zip ({zips[0].name}) alone: it must hold the annotation and the videos")
    dest.mkdir(parents=True, exist_ok=True)
    if zips:
        extract_zip(zips[0], dest, limits)
    else:
        _check_total([p.stat().st_size for p in paths], limits, "the upload")
        _stage_loose(paths, dest)
    return _find_annotation(dest)


def extract_zip(zip_path: Path, dest: Path, limits: UploadLimits = DEFAULT_LIMITS) -> list[Path]:
    """Extract a zip into ``dest`` after checking every entry; nothing is written if one is bad."""
    root = dest.resolve()
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = []
            for info in zf.infolist():
                name = info.filename
                if info.is_dir() or name.startswith("__MACOSX/") or PurePosixPath(name).name.startswith("._"):
                    continue
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise DataError(
                        f"{zip_path.name}: entry {name!r} is a symbolic link; links are not accepted"
                    )
                pure = PurePosixPath(name.replace("\\", "/"))
                target = (root / pure).resolve()
                if pure.is_absolute() or ".." in pure.parts or not target.is_relative_to(root):
                    raise DataError(
                        f"{zip_path.name}: entry {name!r} would be written outside the dataset folder"
                    )
                members.append((info, target))
            if len(members) > limits.max_files:
                raise DataError(
                    f"{zip_path.name}: {len(members)} files, more than the limit of {limits.max_files}"
                )
            _check_total([info.file_size for info, _ in members], limits, zip_path.name)
            for info, target in members:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, _COPY_CHUNK)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{zip_path.name}: not a valid zip file ({exc})") from exc
    return [target for _, target in members]


def _check_total(sizes: list[int], limits: UploadLimits, what: str) -> None:
    total = sum(sizes)
    if total > limits.max_total_bytes:
        raise DataError(
            f"{what} is {human_size(total)}, over the upload limit of {human_size(limits.max_total_bytes)}"
        )


def human_size(n: float) -> str:
    """``5000`` -> ``"4.9 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _stage_loose(paths: list[Path], dest: Path) -> None:
    annotations = [p for p in paths if p.suffix.lower() in ANNOTATION_SUFFIXES]
    if len(annotations) != 1:
        names = ", ".join(p.name for p in annotations) or "none"
        raise DataError(f"upload exactly one annotation file (.json, .jsonl or .csv); got {names}")
    media = [p for p in paths if p not in annotations]
    for p in media:
        if p.suffix.lower() not in MEDIA_SUFFIXES:
            raise DataError(
                f"{p.name}: not a video or image file (allowed: {', '.join(sorted(MEDIA_SUFFIXES))})"
            )
    annotation = dest / annotations[0].name
    shutil.copyfile(annotations[0], annotation)
    # Where the records expect each file name (first record wins); unreferenced files go to the top.
    wanted: dict[str, Path] = {}
    try:
        for item in iter_loaded(annotation, dest):
            if not isinstance(item, StudioError):
                wanted.setdefault(item.media.name, item.media)
    except DataError:
        pass  # the annotation itself is broken: validation reports it
    for p in media:
        target = wanted.get(p.name, dest / p.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, target)


def _find_annotation(dest: Path) -> Path:
    files = [p for p in sorted(dest.rglob("*")) if p.is_file() or p.is_symlink()]
    for p in files:
        if p.is_symlink():
            raise DataError(f"{p.relative_to(dest)}: symbolic links are not accepted")
    annotations = [p for p in files if p.suffix.lower() in ANNOTATION_SUFFIXES]
    if len(annotations) != 1:
        names = ", ".join(str(p.relative_to(dest)) for p in annotations) or "none"
        raise DataError(
            f"expected exactly one annotation file (.json, .jsonl or .csv) in the upload; found {names}"
        )
    for p in files:
        if p not in annotations and p.suffix.lower() not in MEDIA_SUFFIXES:
            raise DataError(f"{p.relative_to(dest)}: not a video or image file; remove it from the upload")
    return annotations[0]


def clean_stale_staging(
    datasets_dir: Path, max_age_s: float = STALE_STAGING_S, now: float | None = None
) -> list[Path]:
    """Delete upload staging folders untouched for more than ``max_age_s``; return those removed.

    A validated upload waits in ``.staging/<token>/`` until Register moves it; one whose page was
    closed stays there. The studio calls this when it starts.
    """
    now = time.time() if now is None else now
    staging = Path(datasets_dir) / STAGING
    removed = []
    for folder in sorted(staging.iterdir()) if staging.is_dir() else []:
        try:
            if folder.is_dir() and not folder.is_symlink() and now - folder.stat().st_mtime > max_age_s:
                shutil.rmtree(folder)
                removed.append(folder)
        except OSError as exc:  # another studio removing it too, or no permission: keep going
            logger.warning("could not remove stale upload %s: %s", folder, exc)
    return removed


# ---- presenting records and reports --------------------------------------------------------------


def report_markdown(report: ValidationReport) -> str:
    mode = f"{report.mode} mode"
    head = f"**{report.total} records: {report.valid} usable, {report.invalid} with errors** ({mode})"
    details = []
    if report.formats:
        details.append("formats: " + ", ".join(f"{k} {v}" for k, v in sorted(report.formats.items())))
    if report.durations is not None:
        d = report.durations
        details.append(
            f"video length {d.min_s:.1f}-{d.max_s:.1f} s (mean {d.mean_s:.1f} s) over {d.count} videos"
        )
    return head + ("\n\n" + "; ".join(details) if details else "")


def error_rows(report: ValidationReport) -> list[list[str]]:
    """One row per bad record: where it is, its id, what is wrong."""
    return [[f"{e.unit} {e.index}", e.record_id or "", problems.clean(e.reason)] for e in report.errors]


def record_html(record: MCQRecord) -> str:
    """Question and options, the correct option highlighted."""
    items = []
    for letter, option in record.options.items():
        correct = letter == record.answer
        style = "background:#dcfce7;border-color:#16a34a;font-weight:600" if correct else ""
        mark = " &#10003; correct" if correct else ""
        items.append(
            f'<li class="vgrpo-option" style="list-style:none;border:1px solid #d4d4d8;border-radius:6px;'
            f'padding:4px 10px;margin:4px 0;{style}">({letter}) {html.escape(option)}{mark}</li>'
        )
    return (
        f'<div class="vgrpo-record"><div style="color:#71717a;font-size:0.85em">{html.escape(record.id)} - '
        f"{html.escape(problems.clean(record.location))}</div>"
        f'<p style="font-size:1.05em;margin:6px 0">{html.escape(record.question)}</p>'
        f'<ul style="padding:0;margin:0">{"".join(items)}</ul></div>'
    )


# ---- the tab ------------------------------------------------------------------------------------


def create_datasets_tab(ctx: StudioContext, limits: UploadLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Build the tab's widgets in the current gr.Tab; returns the key widgets by name."""
    import gradio as gr

    staged = gr.State(None)  # {"dir": ..., "annotation": ...} of this session's validated upload
    records = gr.State([])  # the records being previewed, as dicts

    gr.Markdown(text.INTRO_DATASETS)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            upload = gr.File(
                label=text.UPLOAD_LABEL,
                file_count="multiple",
                file_types=sorted(ANNOTATION_SUFFIXES | MEDIA_SUFFIXES | {".zip"}),
                elem_id="datasets-upload",
                height=180,
            )
            name = gr.Textbox(
                label=text.DATASET_NAME_LABEL, info=text.DATASET_NAME_INFO, elem_id="datasets-name"
            )
            with gr.Row():
                validate_btn = gr.Button(
                    text.VALIDATE_BUTTON, variant="secondary", elem_id="datasets-validate"
                )
                register_btn = gr.Button(text.REGISTER_BUTTON, variant="primary", elem_id="datasets-register")
            status = gr.Markdown(elem_id="datasets-status")
        with gr.Column(scale=3, min_width=420):
            gr.Markdown(text.REPORT_HEADING)
            report_md = gr.Markdown(elem_id="datasets-report")
            errors = gr.Dataframe(
                headers=["where", "record id", "problem"],
                value=[],
                interactive=False,
                wrap=True,
                max_height=260,
                elem_id="datasets-errors",
            )
    gr.Markdown(text.PREVIEW_HEADING)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            preview_index = gr.Slider(0, 1, value=0, step=1, label="Record", elem_id="datasets-preview-index")
            preview_video = gr.Video(
                label="Video", height=260, interactive=False, elem_id="datasets-preview-video"
            )
        with gr.Column(scale=3, min_width=420):
            preview_html = gr.HTML(elem_id="datasets-preview-record")
    gr.Markdown(text.REGISTERED_HEADING)
    # Filled by refresh() on page load and tab select: a build-time value would come back on reload.
    registry = gr.Dataframe(
        headers=["name", "mode", "origin", "annotation"],
        value=[],
        interactive=False,
        wrap=True,
        max_height=300,
        elem_id="datasets-registry",
    )
    with gr.Row():
        pick = gr.Dropdown([], label="Dataset", scale=3, elem_id="datasets-pick")
        preview_btn = gr.Button("Preview", scale=1, elem_id="datasets-preview")
        delete_btn = gr.Button(text.DELETE_DATASET_BUTTON, variant="stop", scale=1, elem_id="datasets-delete")

    def show_record(items: list[dict], index: float) -> tuple[Any, str]:
        if not items:
            return None, ""
        record = MCQRecord.from_dict(items[min(int(index), len(items) - 1)])
        return record.video or record.image, record_html(record)

    def show_report(report: ValidationReport) -> tuple:
        items = [r.to_dict() for r in report.records]
        slider = gr.Slider(0, max(len(items) - 1, 1), value=0, step=1)
        return (report_markdown(report), error_rows(report), items, slider, *show_record(items, 0))

    def on_validate(files: list[str] | None, dataset_name: str, previous: dict | None) -> tuple:
        if previous:
            shutil.rmtree(previous["dir"], ignore_errors=True)
        token_dir = ctx.datasets_dir / STAGING / uuid.uuid4().hex
        try:
            annotation = stage_upload([Path(f) for f in files or []], token_dir, limits)
            mode = mode_for_dataset(dataset_name) if dataset_name.strip() else None
            report = validate_file(annotation, mode=mode)
        except (StudioError, OSError) as exc:
            shutil.rmtree(token_dir, ignore_errors=True)
            refused = problems.error_markdown(exc, text.UPLOAD_REFUSED)
            return (refused, None, "", [], [], gr.Slider(0, 1, value=0), None, "")
        state = {"dir": str(token_dir), "annotation": str(annotation)}
        note = text.NO_VALID_RECORDS if not report.records else "Validated. Name it and press Register."
        return (note, state, *show_report(report))

    def on_register(dataset_name: str, state: dict | None) -> tuple:
        if not state:
            return (text.NOTHING_STAGED, state, *[gr.skip()] * 8)
        try:
            name_ = check_name(dataset_name.strip())
            folder = ctx.datasets_dir / name_
            if folder.exists():
                raise DataError(
                    f"{folder} already exists; delete dataset {name_!r} first or pick another name"
                )
            report = validate_file(state["annotation"], mode=mode_for_dataset(name_))
            if not report.records:
                raise DataError(text.NO_VALID_RECORDS)
            rel = Path(state["annotation"]).relative_to(state["dir"])
            shutil.move(state["dir"], folder)
            entry = register_dataset(name_, folder / rel, ctx.workspace, video_root=(folder / rel).parent)
        except (StudioError, OSError) as exc:
            return (problems.error_markdown(exc, text.NOT_REGISTERED), state, *[gr.skip()] * 8)
        message = text.REGISTERED.format(name=name_, valid=report.valid, mode=entry.mode, folder=folder)
        # Show the records from where they now live (the staging folder is gone).
        moved = validate_file(entry.annotation_path, video_root=entry.video_root, mode=entry.mode)
        return (message, None, *refresh(name_), *show_report(moved))

    def on_preview(dataset_name: str | None) -> tuple:
        if not dataset_name:
            return ("Pick a dataset.", "", [], [], gr.Slider(0, 1, value=0), None, "")
        try:
            entry = next((e for e in list_datasets(ctx.workspace) if e.name == dataset_name), None)
            if entry is None:
                raise DataError(f"dataset {dataset_name!r} is no longer registered; pick another one")
            report = validate_file(
                entry.annotation_path, video_root=entry.video_root, mode=entry.mode, check_videos=False
            )
        except (StudioError, OSError) as exc:
            cannot = problems.error_markdown(exc, text.CANNOT_READ_DATASET.format(name=dataset_name))
            return (cannot, "", [], [], gr.Slider(0, 1, value=0), None, "")
        return (f"Previewing **{dataset_name}**.", *show_report(report))

    def on_delete(dataset_name: str | None) -> tuple:
        if not dataset_name:
            return "Pick a dataset.", gr.skip(), gr.skip()
        try:
            entry = unregister_dataset(dataset_name, ctx.workspace)
        except (StudioError, OSError) as exc:
            return problems.error_markdown(exc, text.NOT_DELETED), gr.skip(), gr.skip()
        folder = ctx.datasets_dir / dataset_name
        if folder.is_dir() and entry.annotation_path.is_relative_to(folder):
            shutil.rmtree(folder, ignore_errors=True)
        return (text.DELETED_DATASET.format(name=dataset_name), *refresh(None))

    def refresh(current: str | None) -> tuple[list[list[str]], Any]:
        """The table and the picker as the registry is now (the pick kept while it exists)."""
        entries = choices.read_datasets(ctx.workspace)
        names = choices.dataset_names(entries)
        return choices.registry_rows(entries), gr.Dropdown(
            choices=names, value=current if current in names else None
        )

    report_outputs = [report_md, errors, records, preview_index, preview_video, preview_html]
    validate_btn.click(on_validate, [upload, name, staged], [status, staged, *report_outputs])
    register_btn.click(on_register, [name, staged], [status, staged, registry, pick, *report_outputs])
    preview_index.change(show_record, [records, preview_index], [preview_video, preview_html])
    preview_btn.click(on_preview, [pick], [status, *report_outputs])
    delete_btn.click(on_delete, [pick], [status, registry, pick])
    return {
        "upload": upload,
        "name": name,
        "status": status,
        "registry": registry,
        "pick": pick,
        "refresh": Refresh(refresh, [pick], [registry, pick]),
    }
