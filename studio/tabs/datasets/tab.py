"""The Datasets tab's widgets and what its buttons do: validate a staged upload, preview its records,
register it, and list, preview or delete the registered datasets."""

from __future__ import annotations

import html
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio import choices, problems, text
from studio.context import StudioContext
from studio.live import Refresh
from studio.tabs.datasets.staging import (
    ANNOTATION_SUFFIXES,
    DEFAULT_LIMITS,
    MEDIA_SUFFIXES,
    STAGING,
    UploadLimits,
    human_size,
    stage_upload,
)
from trainer.core.errors import DataError, StudioError
from trainer.data import (
    MCQRecord,
    ValidationReport,
    list_datasets,
    register_dataset,
    unregister_dataset,
    validate_file,
)
from trainer.data.prompts import mode_for_dataset
from trainer.data.registry import check_name, validate_entry

# What registering does with the records validation refused (the file itself is left as uploaded).
LEFT_OUT = (
    "The {count} records with errors are left out: training, Check, evaluation and the chat never "
    "read them (the file is kept as uploaded)."
)

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
    """Question and options, the correct option highlighted; for the other problem types, the type
    and the reference answer."""
    items = []
    if not record.is_multiple_choice:
        items.append(
            '<li class="vgrpo-reference" style="list-style:none;border:1px solid #16a34a;border-radius:6px;'
            f'padding:4px 10px;margin:4px 0;background:#dcfce7">{html.escape(record.problem_type)} - '
            f"reference answer: <b>{html.escape(record.answer)}</b></li>"
        )
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


@dataclass(frozen=True)
class DatasetsWidgets:
    """The widgets the tab's events read or write."""

    staged: Any  # gr.State {"dir": ..., "annotation": ...} of this session's validated upload
    records: Any  # gr.State: the records being previewed, as dicts
    upload: Any
    name: Any
    validate_btn: Any
    register_btn: Any
    status: Any
    report_md: Any
    errors: Any
    preview_index: Any
    preview_video: Any
    preview_html: Any
    registry: Any
    pick: Any
    preview_btn: Any
    delete_btn: Any

    @property
    def report_outputs(self) -> list[Any]:
        """What :meth:`DatasetsHandlers.show_report` fills, in its order."""
        return [self.report_md, self.errors, self.records, self.preview_index, self.preview_video,
                self.preview_html]  # fmt: skip


class DatasetsHandlers:
    """What the tab's buttons do; a refused upload or action becomes the status line, never a crash."""

    def __init__(self, ctx: StudioContext, limits: UploadLimits) -> None:
        self.ctx = ctx
        self.limits = limits

    @staticmethod
    def show_record(items: list[dict], index: float) -> tuple[Any, str]:
        if not items:
            return None, ""
        record = MCQRecord.from_dict(items[min(int(index), len(items) - 1)])
        return record.video or record.image, record_html(record)

    def show_report(self, report: ValidationReport) -> tuple:
        import gradio as gr

        items = [r.to_dict() for r in report.records]
        slider = gr.Slider(0, max(len(items) - 1, 1), value=0, step=1)
        return (report_markdown(report), error_rows(report), items, slider, *self.show_record(items, 0))

    def on_validate(self, files: list[str] | None, dataset_name: str, previous: dict | None) -> tuple:
        import gradio as gr

        if previous:
            shutil.rmtree(previous["dir"], ignore_errors=True)
        token_dir = self.ctx.datasets_dir / STAGING / uuid.uuid4().hex
        try:
            annotation = stage_upload([Path(f) for f in files or []], token_dir, self.limits)
            mode = mode_for_dataset(dataset_name) if dataset_name.strip() else None
            report = validate_file(annotation, mode=mode)
        except (StudioError, OSError) as exc:
            shutil.rmtree(token_dir, ignore_errors=True)
            discard_uploads(files)
            refused = problems.error_markdown(exc, text.UPLOAD_REFUSED)
            return (refused, None, "", [], [], gr.Slider(0, 1, value=0), None, "")
        state = {"dir": str(token_dir), "annotation": str(annotation)}
        note = text.NO_VALID_RECORDS if not report.records else "Validated. Name it and press Register."
        return (note, state, *self.show_report(report))

    def on_register(self, dataset_name: str, state: dict | None) -> tuple:
        import gradio as gr

        if not state:
            return (text.NOTHING_STAGED, state, *[gr.skip()] * 8)
        ctx = self.ctx
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
            entry = register_dataset(
                name_, folder / rel, ctx.workspace, video_root=(folder / rel).parent, report=report
            )
        except (StudioError, OSError) as exc:
            return (problems.error_markdown(exc, text.NOT_REGISTERED), state, *[gr.skip()] * 8)
        message = text.REGISTERED.format(name=name_, valid=report.valid, mode=entry.mode, folder=folder)
        if entry.rejected:
            message += " " + LEFT_OUT.format(count=len(entry.rejected))
        # Show the records from where they now live (the staging folder is gone), as training reads them.
        moved = validate_entry(entry, check_videos=False)
        return (message, None, *self.refresh(name_), *self.show_report(moved))

    def on_preview(self, dataset_name: str | None) -> tuple:
        import gradio as gr

        if not dataset_name:
            return ("Pick a dataset.", "", [], [], gr.Slider(0, 1, value=0), None, "")
        try:
            entry = next((e for e in list_datasets(self.ctx.workspace) if e.name == dataset_name), None)
            if entry is None:
                raise DataError(f"dataset {dataset_name!r} is no longer registered; pick another one")
            report = validate_entry(entry, check_videos=False)
        except (StudioError, OSError) as exc:
            cannot = problems.error_markdown(exc, text.CANNOT_READ_DATASET.format(name=dataset_name))
            return (cannot, "", [], [], gr.Slider(0, 1, value=0), None, "")
        return (f"Previewing **{dataset_name}**.", *self.show_report(report))

    def on_delete(self, dataset_name: str | None) -> tuple:
        import gradio as gr

        if not dataset_name:
            return "Pick a dataset.", gr.skip(), gr.skip()
        try:
            entry = unregister_dataset(dataset_name, self.ctx.workspace)
        except (StudioError, OSError) as exc:
            return problems.error_markdown(exc, text.NOT_DELETED), gr.skip(), gr.skip()
        folder = self.ctx.datasets_dir / dataset_name
        if folder.is_dir() and entry.annotation_path.is_relative_to(folder):
            shutil.rmtree(folder, ignore_errors=True)
        return (text.DELETED_DATASET.format(name=dataset_name), *self.refresh(None))

    def refresh(self, current: str | None) -> tuple[list[list[str]], Any]:
        """The table and the picker as the registry is now (the pick kept while it exists)."""
        import gradio as gr

        entries = choices.read_datasets(self.ctx.workspace)
        names = choices.dataset_names(entries)
        return choices.registry_rows(entries), gr.Dropdown(
            choices=names, value=current if current in names else None
        )


def discard_uploads(files: list[str] | None) -> None:
    """Delete gradio's copies of a refused upload: a 2 GiB file refused must not stay in its temp
    folder until the studio restarts. The user uploads again after fixing it."""
    for f in files or []:
        Path(f).unlink(missing_ok=True)


def _upload_section(limits: UploadLimits) -> tuple[Any, ...]:
    """The upload form beside the validation report:
    ``(upload, name, validate, register, status, report, errors)``. Its label says the size limit
    before anything is sent (a 2.1 GB file used to be refused only after 40 s of uploading)."""
    import gradio as gr

    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            upload = gr.File(
                label=text.UPLOAD_LABEL.format(limit=human_size(limits.max_total_bytes)),
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
    return upload, name, validate_btn, register_btn, status, report_md, errors


def _preview_section() -> tuple[Any, Any, Any]:
    """``(record slider, video, record)`` of the records being previewed."""
    import gradio as gr

    gr.Markdown(text.PREVIEW_HEADING)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            preview_index = gr.Slider(0, 1, value=0, step=1, label="Record", elem_id="datasets-preview-index")
            preview_video = gr.Video(
                label="Video", height=260, interactive=False, elem_id="datasets-preview-video"
            )
        with gr.Column(scale=3, min_width=420):
            preview_html = gr.HTML(elem_id="datasets-preview-record")
    return preview_index, preview_video, preview_html


def _registry_section() -> tuple[Any, Any, Any, Any]:
    """``(registry table, picker, preview, delete)`` of the registered datasets."""
    import gradio as gr

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
    return registry, pick, preview_btn, delete_btn


def build_layout(limits: UploadLimits = DEFAULT_LIMITS) -> DatasetsWidgets:
    """The tab's widgets: upload and report, record preview, registered datasets."""
    import gradio as gr

    staged = gr.State(None)
    records = gr.State([])
    gr.Markdown(text.INTRO_DATASETS)
    upload, name, validate_btn, register_btn, status, report_md, errors = _upload_section(limits)
    preview_index, preview_video, preview_html = _preview_section()
    registry, pick, preview_btn, delete_btn = _registry_section()
    return DatasetsWidgets(
        staged=staged, records=records, upload=upload, name=name, validate_btn=validate_btn,
        register_btn=register_btn, status=status, report_md=report_md, errors=errors,
        preview_index=preview_index, preview_video=preview_video, preview_html=preview_html,
        registry=registry, pick=pick, preview_btn=preview_btn, delete_btn=delete_btn,
    )  # fmt: skip


def _wire_events(w: DatasetsWidgets, h: DatasetsHandlers) -> None:
    report_outputs = w.report_outputs
    w.validate_btn.click(h.on_validate, [w.upload, w.name, w.staged], [w.status, w.staged, *report_outputs])
    w.register_btn.click(
        h.on_register, [w.name, w.staged], [w.status, w.staged, w.registry, w.pick, *report_outputs]
    )
    w.preview_index.change(h.show_record, [w.records, w.preview_index], [w.preview_video, w.preview_html])
    w.preview_btn.click(h.on_preview, [w.pick], [w.status, *report_outputs])
    w.delete_btn.click(h.on_delete, [w.pick], [w.status, w.registry, w.pick])


def create_datasets_tab(ctx: StudioContext, limits: UploadLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Build the tab's widgets in the current gr.Tab; returns the key widgets by name."""
    w = build_layout(limits)
    h = DatasetsHandlers(ctx, limits)
    _wire_events(w, h)
    return {
        "upload": w.upload,
        "name": w.name,
        "status": w.status,
        "registry": w.registry,
        "pick": w.pick,
        "refresh": Refresh(h.refresh, [w.pick], [w.registry, w.pick]),
    }
