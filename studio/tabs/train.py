"""Train tab: model, datasets, every config knob (generated from TrainConfig), preview, launch.

Launch goes through ``Supervisor.start``: the YAML is written under ``<workspace>/configs/``, a
queued run row is created and ``python -m trainer.cli train --config ... --attach_run ID`` starts
in the background. Config errors are shown in the tab, never raised.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from studio import choices, forms, problems, text
from studio.context import StudioContext
from studio.live import Refresh
from studio.supervisor import Supervisor
from trainer.config import TrainConfig
from trainer.errors import StudioError
from trainer.paths import TINY_MODEL_DIR

HUB_MODELS = ("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct")


def dataset_spec(names: list[str] | None, percent: float) -> str:
    """``["a", "b"], 50`` -> ``"a%50,b%50"`` (no suffix at 100 %)."""
    suffix = "" if percent >= 100 else f"%{percent:g}"
    return ",".join(f"{name}{suffix}" for name in names or [])


def preview_texts(supervisor: Supervisor, cfg: TrainConfig) -> tuple[str, str]:
    """The YAML the run will get and the command lines that run it (studio's and by flags)."""
    prepared = supervisor.prepare(cfg)
    config_path = supervisor.ctx.configs_dir / f"{prepared.run.run_name}.yaml"
    studio_cmd = shlex.join(supervisor.trainer_command(config_path, 0)).replace(
        "--attach_run 0", "--attach_run <run id>"
    )
    by_flags = forms.command_line(prepared, skip=forms.MANAGED_FIELDS)
    return (
        prepared.to_yaml(),
        f"# what the studio runs\n{studio_cmd}\n\n# the same run from a terminal\n{by_flags}",
    )


def create_train_tab(ctx: StudioContext, supervisor: Supervisor) -> dict[str, Any]:
    """Build the tab in the current gr.Tab; returns key widgets (``launch``, ``last_run``, ``status``)."""
    import gradio as gr

    preset = forms.field_values(forms.load_preset())
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

    gr.Markdown(text.INTRO_TRAIN)
    with gr.Row(equal_height=False):
        pick = gr.Dropdown(
            [],  # filled by refresh_pick on page load and tab select
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
    widgets = forms.build_form(
        preset, custom={"model_name_or_path": model_widget}, open_sections=("model", "data", "grpo")
    )
    inputs = [widgets[n] for n in names]
    with gr.Row():
        reset = gr.Button(text.RESET_BUTTON, elem_id="train-reset")
        check = gr.Button(text.PREVIEW_BUTTON, elem_id="train-check")
        launch = gr.Button(text.LAUNCH_BUTTON, variant="primary", elem_id="train-launch")
    status = gr.Markdown(elem_id="train-status")
    last_run = gr.State(None)
    cmd_box = gr.Code(
        label=text.COMMAND_LABEL,
        language="shell",
        interactive=False,
        wrap_lines=True,
        elem_id="train-command",
    )
    yaml_box = gr.Code(
        label=text.YAML_LABEL, language="yaml", interactive=False, max_lines=24, elem_id="train-yaml"
    )

    def on_check(*values: Any) -> tuple[str, Any, Any]:
        try:
            cfg = forms.config_from_values(dict(zip(names, values, strict=True)))
            yaml_text, cmd = preview_texts(supervisor, cfg)
        except StudioError as exc:
            return problems.error_markdown(exc, text.CONFIG_ERROR), gr.skip(), gr.skip()
        return "Config is valid.", yaml_text, cmd

    def on_launch(*values: Any) -> tuple[str, Any, Any, Any]:
        try:
            cfg = forms.config_from_values(dict(zip(names, values, strict=True)))
            yaml_text, cmd = preview_texts(supervisor, cfg)
            launched = supervisor.start(cfg)
        except (StudioError, OSError) as exc:
            return problems.error_markdown(exc, text.NOT_LAUNCHED), gr.skip(), gr.skip(), gr.skip()
        run = launched.run
        message = text.LAUNCHED.format(run_id=run.id, name=run.name, pid=launched.pid, log=launched.log_path)
        return message, Path(launched.config_path).read_text(), cmd, run.id

    def on_use(selected: list[str] | None, pct: float, current: str) -> Any:
        spec = dataset_spec(selected, pct)
        return spec if spec else current

    def on_reset() -> list[Any]:
        values = forms.field_values(forms.load_preset())
        return [values[n] for n in names]

    def refresh_pick(current: list[str] | None) -> Any:
        names = choices.dataset_names(choices.read_datasets(ctx.workspace))
        return gr.Dropdown(choices=names, value=[n for n in current or [] if n in names])

    pick.focus(refresh_pick, pick, pick)
    use.click(on_use, [pick, percent, widgets["dataset_use"]], widgets["dataset_use"])
    check.click(on_check, inputs, [status, yaml_box, cmd_box])
    launch_event = launch.click(on_launch, inputs, [status, yaml_box, cmd_box, last_run])
    reset.click(on_reset, None, inputs)
    return {
        "launch": launch,
        "launch_event": launch_event,
        "last_run": last_run,
        "status": status,
        "widgets": widgets,
        "refresh": Refresh(refresh_pick, [pick], [pick]),
    }
