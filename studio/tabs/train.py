"""Train tab: the essentials on one screen (model, datasets, seed knobs, budget, Check and Launch),
everything else in collapsed sections generated from TrainConfig, YAML in and out.

Check config and Launch run the same launch checks (``trainer.preflight.check_launch``); Check then
samples a few groups with the chosen model and shows them, the cost of a step and any warning that
the run cannot learn. Launch goes through ``Supervisor.start``: the YAML is written under
``<workspace>/configs/``, a queued run row is created and ``python -m trainer.cli train --config ...
--attach_run ID`` starts in the background. Config errors are shown in the tab, never raised.
"""

from __future__ import annotations

import logging
import shlex
import tempfile
from pathlib import Path
from typing import Any

from studio import forms, text
from studio.context import StudioContext
from studio.supervisor import Supervisor
from trainer.config import TrainConfig
from trainer.data import list_datasets
from trainer.data.prompts import NO_THINK
from trainer.errors import StudioError
from trainer.paths import TINY_MODEL_DIR
from trainer.preflight import MEMORY_NOTE, PreflightReport, check_launch, memory_text, run_preflight

logger = logging.getLogger(__name__)

HUB_MODELS = ("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct")


def preview_texts(supervisor: Supervisor, prepared: TrainConfig) -> tuple[str, str]:
    """The YAML the run will get and the command lines that run it (studio's and by flags)."""
    config_path = supervisor.ctx.configs_dir / f"{prepared.run.run_name}.yaml"
    studio_cmd = shlex.join(supervisor.trainer_command(config_path, 0)).replace(
        "--attach_run 0", "--attach_run <run id>"
    )
    by_flags = forms.command_line(prepared, skip=forms.MANAGED_FIELDS)
    return (
        prepared.to_yaml(),
        f"# what the studio runs\n{studio_cmd}\n\n# the same run from a terminal\n{by_flags}\n"
        f"# its pre-flight, without training\n{by_flags} --check",
    )


def checked_config(supervisor: Supervisor, values: dict[str, Any]) -> TrainConfig:
    """Form values -> the config as it will run, after every check Launch runs (raises StudioError)."""
    prepared = supervisor.prepare(forms.config_from_values(values))
    check_launch(prepared)
    return prepared


def completion_rows(report: PreflightReport) -> list[list[Any]]:
    return [
        [c.record_id, c.correct_letter, c.group_index, c.text, c.tokens, "cut" if c.is_cut else "",
         c.format_reward, c.accuracy_reward, round(c.total_reward, 3)]
        for c in report.completions
    ]  # fmt: skip


def cost_markdown(report: PreflightReport) -> str:
    c = report.cost
    spread = ", ".join(f"{s:.2f}" for s in report.group_spread)
    return "\n".join(
        [
            text.COST_HEADING,
            f"- prompt tokens per question: **{c.prompt_tokens:.0f}** ({c.video_tokens:.0f} video tokens)",
            f"- completion tokens: **{c.completion_tokens:.1f}** on average, "
            f"{c.completion_tokens_max} at most",
            f"- sequences per step: **{c.sequences_per_step}**; reward spread within groups (std): {spread}",
            f"- model: {c.parameters / 1e6:.1f}M parameters, {c.trainable_parameters / 1e6:.1f}M trainable",
            f"- memory estimate {memory_text(c)}",
            f"- <small>{MEMORY_NOTE}</small>",
        ]
    )


def report_status(report: PreflightReport) -> str:
    if report.warnings:
        items = "\n".join(f"- **{w.knob}**: {w.message}" for w in report.warnings)
        return text.CONFIG_VALID_WARNS.format(warnings=items)
    return text.CONFIG_VALID_CAN_LEARN.format(
        groups=report.groups_with_spread,
        total=len(report.group_spread),
        fmt=report.format_rate,
        acc=report.accuracy_rate,
    )


def create_train_tab(ctx: StudioContext, supervisor: Supervisor) -> dict[str, Any]:
    """Build the tab in the current gr.Tab; returns key widgets (``launch``, ``last_run``, ``status``)."""
    import gradio as gr

    start_preset = forms.preset_for_mode(NO_THINK)
    preset_values = forms.field_values(start_preset)
    names = [f.name for f in forms.form_fields()]

    def model_widget(f: forms.FormField, value: Any) -> Any:
        choices = list(dict.fromkeys([str(TINY_MODEL_DIR), str(value), *HUB_MODELS]))
        return gr.Dropdown(
            choices,
            value=str(value),
            allow_custom_value=True,
            label=text.MODEL_LABEL,
            info=f"{text.MODEL_INFO} ({f.name})",
            elem_id=f"train-{f.name}",
            min_width=320,
        )

    custom = {"model_name_or_path": model_widget}
    gr.Markdown(text.INTRO_TRAIN)
    preset_mode = gr.State(NO_THINK)
    with gr.Row(equal_height=False):
        pick = gr.Dropdown(
            [e.name for e in list_datasets(ctx.workspace)],
            multiselect=True,
            label=text.DATASET_PICK_LABEL,
            info=text.DATASET_PICK_INFO,
            scale=4,
            elem_id="train-dataset-pick",
        )
        percent = gr.Slider(
            1, 100, value=100, step=1, label=text.PERCENT_LABEL, scale=2, elem_id="train-percent"
        )
        use = gr.Button(text.USE_DATASETS_BUTTON, scale=0, min_width=100, elem_id="train-use-datasets")
    widgets = forms.build_essentials(preset_values, custom)
    with gr.Row():
        reset = gr.Button(text.RESET_BUTTON, elem_id="train-reset")
        check = gr.Button(text.PREVIEW_BUTTON, elem_id="train-check")
        launch = gr.Button(text.LAUNCH_BUTTON, variant="primary", elem_id="train-launch")
    status = gr.Markdown(elem_id="train-status")
    with gr.Column(visible=False, elem_id="train-preflight") as preflight_box:
        table = gr.Dataframe(
            headers=text.PREFLIGHT_HEADERS,
            label=text.PREFLIGHT_TABLE_LABEL,
            interactive=False,
            wrap=True,
            max_height=320,
            elem_id="train-preflight-table",
        )
        cost = gr.Markdown(elem_id="train-preflight-cost")
    gr.Markdown(text.MORE_SETTINGS)
    more, accordions = forms.build_sections(preset_values, start_preset, custom)
    widgets.update(more)
    with gr.Accordion(text.YAML_IO_HEADING, open=False, elem_id="train-section-yaml"):
        yaml_box = gr.Code(
            value=start_preset.to_yaml(),
            label=text.YAML_IO_LABEL,
            language="yaml",
            interactive=True,
            max_lines=24,
            elem_id="train-yaml",
        )
        with gr.Row():
            load_yaml = gr.Button(text.LOAD_YAML_BUTTON, elem_id="train-load-yaml")
            download = gr.DownloadButton(text.DOWNLOAD_YAML_BUTTON, elem_id="train-download-yaml")
        cmd_box = gr.Code(
            label=text.COMMAND_LABEL,
            language="shell",
            interactive=False,
            wrap_lines=True,
            elem_id="train-command",
        )
    inputs = [widgets[n] for n in names]
    last_run = gr.State(None)

    def values_of(args: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(names, args, strict=True))

    def download_file(prepared: TrainConfig) -> str:
        folder = Path(tempfile.mkdtemp(prefix="vgrpo-config-"))
        path = folder / f"{prepared.run.run_name}.yaml"
        path.write_text(prepared.to_yaml())
        return str(path)

    def on_check(*args: Any) -> tuple[Any, ...]:
        try:
            prepared = checked_config(supervisor, values_of(args))
            yaml_text, cmd = preview_texts(supervisor, prepared)
        except StudioError as exc:
            return (text.CONFIG_ERROR.format(error=exc), gr.Column(visible=False),
                    *[gr.skip()] * 5)  # fmt: skip
        try:
            report = run_preflight(prepared)
        except StudioError as exc:
            return (text.PREFLIGHT_FAILED.format(error=exc), gr.Column(visible=False), gr.skip(), gr.skip(),
                    yaml_text, cmd, download_file(prepared))  # fmt: skip
        shown = gr.Column(visible=True)
        return (report_status(report), shown, completion_rows(report), cost_markdown(report), yaml_text, cmd,
                download_file(prepared))  # fmt: skip

    def on_launch(*args: Any) -> tuple[Any, Any, Any, Any]:
        try:
            prepared = checked_config(supervisor, values_of(args))
            _, cmd = preview_texts(supervisor, prepared)
            launched = supervisor.start(prepared)
        except StudioError as exc:
            return text.CONFIG_ERROR.format(error=exc), gr.skip(), gr.skip(), gr.skip()
        run = launched.run
        message = text.LAUNCHED.format(run_id=run.id, name=run.name, pid=launched.pid, log=launched.log_path)
        return message, Path(launched.config_path).read_text(), cmd, run.id

    def on_use(selected: list[str] | None, pct: float, mode: str, *args: Any) -> list[Any]:
        entries = {e.name: e for e in list_datasets(ctx.workspace)}
        choice = forms.choose_datasets(selected or [], pct, values_of(args), entries)
        updates = [choice.values.get(n, gr.skip()) for n in names]
        return [choice.message, choice.mode or mode, *updates]

    def on_reset(mode: str) -> list[Any]:
        values = forms.field_values(forms.preset_for_mode(mode))
        return [values[n] for n in names]

    def on_load_yaml(yaml_text: str, mode: str) -> list[Any]:
        try:
            values = forms.values_from_yaml(yaml_text or "", forms.preset_for_mode(mode))
        except StudioError as exc:
            return [text.CONFIG_ERROR.format(error=exc), *[gr.skip() for _ in names]]
        return [text.YAML_LOADED, *[values[n] for n in names]]

    def section_labeller(section: str, section_names: list[str]) -> Any:
        def label(mode: str, *args: Any) -> Any:
            values = dict(zip(section_names, args, strict=True))
            changed = forms.changed_fields(values, forms.preset_for_mode(mode), section_names)
            return gr.Accordion(label=forms.section_label(section, len(changed)))

        return label

    for section, accordion in accordions.items():
        section_names = [f.name for f in forms.section_fields(section)]
        section_widgets = [widgets[n] for n in section_names]
        gr.on(
            [w.change for w in section_widgets] + [preset_mode.change],
            section_labeller(section, section_names),
            [preset_mode, *section_widgets],
            accordion,
            show_progress="hidden",
            trigger_mode="always_last",
        )

    pick.focus(lambda: gr.Dropdown(choices=[e.name for e in list_datasets(ctx.workspace)]), None, pick)
    use.click(on_use, [pick, percent, preset_mode, *inputs], [status, preset_mode, *inputs])
    check.click(on_check, inputs, [status, preflight_box, table, cost, yaml_box, cmd_box, download])
    launch_event = launch.click(on_launch, inputs, [status, yaml_box, cmd_box, last_run])
    reset.click(on_reset, preset_mode, inputs)
    load_yaml.click(on_load_yaml, [yaml_box, preset_mode], [status, *inputs])
    return {
        "launch": launch,
        "launch_event": launch_event,
        "last_run": last_run,
        "status": status,
        "widgets": widgets,
        "accordions": accordions,
    }
