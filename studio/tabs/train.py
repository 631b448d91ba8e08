"""Train tab: the essentials on one screen (model, datasets, seed knobs, budget, Check and Launch),
everything else in collapsed sections generated from TrainConfig, YAML in and out.

Check config and Launch run the same launch checks (``trainer.run.preflight.check_launch``); Check then
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

from studio import choices, forms, models, problems, reward_files, text
from studio.context import StudioContext
from studio.environments import trainer_python, vllm_environment_text
from studio.live import Refresh
from studio.supervisor import Supervisor
from trainer.core.config import TrainConfig, field_index
from trainer.core.errors import StudioError
from trainer.data import list_datasets
from trainer.data.prompts import NO_THINK
from trainer.model.families import FAMILIES, ModelFamily
from trainer.rollout.vllm_engine import BACKENDS
from trainer.run.preflight import MEMORY_NOTE, PreflightReport, check_launch, memory_text, run_preflight

logger = logging.getLogger(__name__)


def preview_texts(supervisor: Supervisor, prepared: TrainConfig) -> tuple[str, str]:
    """The YAML the run will get and the command lines that run it (studio's and by flags)."""
    config_path = supervisor.ctx.configs_dir / f"{prepared.run.run_name}.yaml"
    studio_cmd = shlex.join(supervisor.trainer_command(config_path, 0, prepared)).replace(
        "--attach_run 0", "--attach_run <run id>"
    )
    by_flags = forms.command_line(prepared, skip=forms.MANAGED_FIELDS)
    return (
        prepared.to_yaml(),
        f"# what the studio runs\n{studio_cmd}\n\n# the same run from a terminal\n{by_flags}\n"
        f"# its pre-flight, without training\n{by_flags} --check",
    )


def checked_config(supervisor: Supervisor, values: dict[str, Any]) -> TrainConfig:
    """Form values -> the config as it will run, after every check Launch runs (raises StudioError).
    Reward files must live in the workspace: a browser user must not make the trainer run any file
    of this machine (the terminal's ``vgrpo train`` has no such limit)."""
    prepared = supervisor.prepare(forms.config_from_values(values))
    check_launch(prepared, reward_roots=[supervisor.ctx.workspace])
    trainer_python(prepared)  # a vllm run needs a Python with vLLM (studio.environments)
    return prepared


def completion_rows(report: PreflightReport) -> list[list[Any]]:
    return [
        [c.record_id, c.correct_letter, c.group_index, c.text, c.tokens, "cut" if c.is_cut else "",
         c.format_reward, c.accuracy_reward, round(c.total_reward, 3)]
        for c in report.completions
    ]  # fmt: skip


def cost_markdown(report: PreflightReport, family: ModelFamily | None = None) -> str:
    """The step's cost; with the model's ``family``, named next to its visual tokens (their count
    per frame depends on the family's token size)."""
    c = report.cost
    spread = ", ".join(f"{s:.2f}" for s in report.group_spread)
    side = models.token_side(family) if family is not None else 0
    of_family = f" of {family.name}, {side} x {side} px each" if family is not None else ""
    named = f"{family.name}, " if family is not None else ""
    return "\n".join(
        [
            text.COST_HEADING,
            f"- prompt tokens per question: **{c.prompt_tokens:.0f}** "
            f"({c.video_tokens:.0f} video tokens{of_family})",
            f"- completion tokens: **{c.completion_tokens:.1f}** on average, "
            f"{c.completion_tokens_max} at most",
            f"- sequences per step: **{c.sequences_per_step}**; reward spread within groups (std): {spread}",
            f"- model: {named}{c.parameters / 1e6:.1f}M parameters, "
            f"{c.trainable_parameters / 1e6:.1f}M trainable",
            *(f"- {note}" for note in report.notes),
            f"- memory estimate {memory_text(c)}",
            f"- <small>{MEMORY_NOTE}</small>",
        ]
    )


def preflight_problem(exc: BaseException) -> str:
    """Why the pre-flight could not sample: the headline, and the whole message folded under it when
    the headline is cut (a model the hub cannot give also carries its published size estimate)."""
    problem = problems.describe(exc)
    full = problems.clean(str(exc)).strip()
    if isinstance(exc, StudioError) and full != problem.headline:
        problem = problems.Problem(problem.headline, full)
    return problems.problem_markdown(problem)


def report_status(report: PreflightReport) -> str:
    if report.warnings:
        items = "\n".join(f"- **{w.knob}**: {text.literal(w.message)}" for w in report.warnings)
        return text.CONFIG_VALID_WARNS.format(warnings=items)
    return text.CONFIG_VALID_CAN_LEARN.format(
        groups=report.groups_with_spread,
        total=len(report.group_spread),
        fmt=report.format_rate,
        acc=report.accuracy_rate,
    )


class TrainHandlers:
    """What the tab's buttons do. Form values arrive as positional args in ``names`` order;
    each handler returns the updates of its outputs (StudioError becomes a message, never raised)."""

    def __init__(self, ctx: StudioContext, supervisor: Supervisor) -> None:
        self.ctx = ctx
        self.supervisor = supervisor
        self.names = [f.name for f in forms.form_fields()]

    def values_of(self, args: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(self.names, args, strict=True))

    def check(self, *args: Any) -> tuple[Any, ...]:
        """-> status, pre-flight box, completions table, cost, YAML, command, download file."""
        import gradio as gr

        try:
            prepared = checked_config(self.supervisor, self.values_of(args))
            yaml_text, cmd = preview_texts(self.supervisor, prepared)
        except StudioError as exc:
            error = problems.error_markdown(exc, text.CONFIG_ERROR)
            return (error, gr.Column(visible=False), *[gr.skip()] * 5)
        try:
            report = run_preflight(prepared)
        except (StudioError, OSError) as exc:  # never a bare "Error" over the last Check's status
            status = text.PREFLIGHT_FAILED.format(error=preflight_problem(exc))
            return (
                status,
                gr.Column(visible=False),
                gr.skip(),
                gr.skip(),
                yaml_text,
                cmd,
                download_file(prepared),
            )
        rows, cost = (
            completion_rows(report),
            cost_markdown(report, models.family_of(report.launch.model_path)),
        )
        status = report_status(report)
        if prepared.grpo.rollout_backend == "vllm":
            status += text.PREFLIGHT_VLLM_NOTE.format(where=vllm_environment_text())
        return (
            status,
            gr.Column(visible=True),
            rows,
            cost,
            yaml_text,
            cmd,
            download_file(prepared),
        )

    def launch(self, *args: Any) -> tuple[Any, Any, Any, Any]:
        """-> status, YAML, command, the launched run's id."""
        import gradio as gr

        try:
            prepared = checked_config(self.supervisor, self.values_of(args))
            _, cmd = preview_texts(self.supervisor, prepared)
        except StudioError as exc:  # worded as Check words it: Check = Launch
            return problems.error_markdown(exc, text.CONFIG_ERROR), gr.skip(), gr.skip(), gr.skip()
        try:
            launched = self.supervisor.start(prepared)
        except (StudioError, OSError) as exc:
            return problems.error_markdown(exc, text.NOT_LAUNCHED), gr.skip(), gr.skip(), gr.skip()
        run = launched.run
        message = (
            text.LAUNCHED_RAY.format(
                run_id=run.id, name=run.name, job=run.ray_job_id, address=run.ray_address
            )
            if run.ray_job_id
            else text.LAUNCHED.format(run_id=run.id, name=run.name, pid=launched.pid, log=launched.log_path)
        )
        return message, Path(launched.config_path).read_text(), cmd, run.id

    def use(self, selected: list[str] | None, pct: float, mode: str, *args: Any) -> list[Any]:
        """-> status, preset mode, every field (unchanged ones skipped)."""
        import gradio as gr

        entries = {e.name: e for e in list_datasets(self.ctx.workspace)}
        choice = forms.choose_datasets(selected or [], pct, self.values_of(args), entries)
        return [choice.message, choice.mode or mode, *[choice.values.get(n, gr.skip()) for n in self.names]]

    def reset(self, mode: str) -> list[Any]:
        """-> every field, the family its pixel budgets are sized for."""
        values = forms.field_values(forms.preset_for_mode(mode))
        return [*[values[n] for n in self.names], sized_for(values["model_name_or_path"])]

    def load_yaml(self, yaml_text: str, mode: str, *current: Any) -> list[Any]:
        """-> status (which values the YAML changed in the form, so a stale paste never silently
        undoes edits), every field, the family its pixel budgets are sized for."""
        import gradio as gr

        try:
            values = forms.values_from_yaml(yaml_text or "", forms.preset_for_mode(mode))
        except StudioError as exc:
            return [
                problems.error_markdown(exc, text.CONFIG_ERROR),
                *[gr.skip() for _ in self.names],
                gr.skip(),
            ]
        before = self.values_of(current)
        old, new = ({n: forms.value_text(v[n]) for n in self.names} for v in (before, values))
        changed = [f"{n} {old[n]!r} -> {new[n]!r}" for n in self.names if old[n] != new[n]]
        said = text.YAML_CHANGED.format(changes="; ".join(changed)) if changed else text.YAML_UNCHANGED
        status = f"{text.YAML_LOADED} {text.literal(said)}"
        return [status, *[values[n] for n in self.names], sized_for(values["model_name_or_path"])]

    def form_yaml(self, *current: Any) -> list[Any]:
        """-> the YAML box and the command box for the form as it is (opened, or after Use / Reset).
        The YAML is the form's own (Load YAML gives the same form back); the commands are those of
        the run it would launch. Both left as they are while a field holds a value the config
        refuses (Check names it)."""
        import gradio as gr

        try:
            cfg = forms.config_from_values(self.values_of(current))
            _, cmd = preview_texts(self.supervisor, self.supervisor.prepare(cfg))
        except StudioError:
            return [gr.skip(), gr.skip()]
        return [cfg.to_yaml(), cmd]

    def upload_reward(self, path: str | None) -> str:
        """A reward file from the upload button -> what happened: where it is stored and the
        ``FILE.py:NAME`` to type, or why it was refused (no login on a non-loopback address, not a
        ``.py`` file, too large, a different file of that name already there)."""
        if not path:
            return ""
        if not reward_files.is_upload_allowed(self.ctx.host, self.ctx.has_login):
            return f"**{text.REWARD_UPLOAD_REFUSED}:** {text.REWARD_UPLOAD_NOT_LOCAL}"
        try:
            stored = reward_files.store_reward_file(Path(path), self.ctx.workspace)
        except (StudioError, OSError) as exc:
            return problems.error_markdown(exc, text.REWARD_UPLOAD_REFUSED)
        if not stored.functions:
            return text.REWARD_UPLOADED_NO_FUNCTION.format(path=stored.relative, file=stored.relative)
        refs = [f"{stored.relative}:{name}" for name in stored.functions]
        more = "".join(f", or `{ref}`" for ref in refs[1:])
        return text.REWARD_UPLOADED.format(path=stored.relative, ref=refs[0], more=more)

    @staticmethod
    def choose_model(model: str, pixels_family: str | None, *pixels: Any) -> list[Any]:
        """The user picked or typed a model -> status, the ``PIXEL_FIELDS``, the family they are
        now sized for (``model_type``). A family whose visual token is another size gets the budgets
        rescaled; a model whose family cannot be told yet (a hub id not in the cache) leaves them."""
        import gradio as gr

        new, old = models.family_of(model), FAMILIES.get(pixels_family or "")
        if new is None:
            return [gr.skip(), *[gr.skip() for _ in pixels], pixels_family]
        typed = dict(zip(models.PIXEL_FIELDS, pixels, strict=True))
        change = None if old is None else models.rescale_pixels(typed, old, new)
        if change is None:
            return [gr.skip(), *[gr.skip() for _ in pixels], new.model_type]
        fields = [change.values.get(n, gr.skip()) for n in models.PIXEL_FIELDS]
        return [change.message, *fields, new.model_type]

    @staticmethod
    def section_labeller(section: str) -> Any:
        """The handler that recounts a section's changed fields: (preset mode, its fields) -> label."""
        import gradio as gr

        section_names = [f.name for f in forms.section_fields(section)]

        def label(mode: str, *args: Any) -> Any:
            values = dict(zip(section_names, args, strict=True))
            changed = forms.changed_fields(values, forms.preset_for_mode(mode), section_names)
            return gr.Accordion(label=forms.section_label(section, len(changed)))

        return label


def download_file(prepared: TrainConfig) -> str:
    """The checked config as a file the download button serves."""
    folder = Path(tempfile.mkdtemp(prefix="vgrpo-config-"))
    path = folder / f"{prepared.run.run_name}.yaml"
    path.write_text(prepared.to_yaml())
    return str(path)


def model_widget(f: forms.FormField, value: Any) -> Any:
    """The model field as a dropdown of the embedded models (each with its family) and the hub ids
    (any path may be typed). Values stay absolute paths, so the studio works from any folder."""
    import gradio as gr

    return gr.Dropdown(
        models.model_choices(str(value)),
        value=str(value),
        allow_custom_value=True,
        label=text.MODEL_LABEL,
        info=f"{text.MODEL_INFO} ({f.name})",
        elem_id=f"train-{f.name}",
        min_width=320,
    )


def rollout_backend_widget(f: forms.FormField, value: Any) -> Any:
    """hf or vllm, with where a vllm run's trainer runs (it needs its own environment on a CPU)."""
    import gradio as gr

    return gr.Dropdown(
        list(BACKENDS), value=str(value), label=f.name, info=text.ROLLOUT_BACKEND_INFO,
        elem_id=f"train-{f.name}", min_width=220,
    )  # fmt: skip


def launcher_widget(f: forms.FormField, value: Any) -> Any:
    """Where the run trains: this machine or a Ray cluster (the launch section's other fields say
    which cluster and how many workers)."""
    import gradio as gr

    return gr.Radio(
        text.LAUNCHER_CHOICES, value=str(value), label=f.name, info=text.LAUNCHER_INFO,
        elem_id=f"train-{f.name}",
    )  # fmt: skip


def rewards_widget(extra: dict[str, Any]) -> forms.WidgetFactory:
    """The rewards table with an upload button for a reward file beside it (its widgets go into
    ``extra``: ``reward_upload``, ``reward_upload_status``)."""

    def build(f: forms.FormField, value: Any) -> Any:
        import gradio as gr

        with gr.Column():
            table = forms.table_widget(f, value)
            with gr.Row(equal_height=True):
                extra["reward_upload"] = gr.UploadButton(
                    text.REWARD_UPLOAD_BUTTON, file_types=[".py"], file_count="single", type="filepath",
                    size="sm", scale=0, min_width=240, elem_id="train-reward-upload",
                )  # fmt: skip
                extra["reward_upload_status"] = gr.Markdown(elem_id="train-reward-upload-status")
        return table

    return build


def sized_for(model: str) -> str | None:
    """The ``model_type`` of a model's family (None while unknown): what the form's pixel budgets
    are sized for after the form takes that model with its own budgets (preset, YAML)."""
    family = models.family_of(model)
    return family.model_type if family is not None else None


def build_layout(ctx: StudioContext) -> dict[str, Any]:
    """The tab's widgets, essentials first; returns them by name (``fields``: {field: widget})."""
    import gradio as gr

    preset = forms.preset_for_mode(NO_THINK)
    values = forms.field_values(preset)
    w: dict[str, Any] = {"preset_mode": gr.State(NO_THINK), "last_run": gr.State(None)}
    custom = {
        "model_name_or_path": model_widget,
        "rollout_backend": rollout_backend_widget,
        "launcher": launcher_widget,
        "rewards": rewards_widget(w),
    }
    w["pixels_family"] = gr.State(sized_for(values["model_name_or_path"]))
    gr.Markdown(text.INTRO_TRAIN)
    with gr.Row(equal_height=False):
        w["pick"] = gr.Dropdown(
            [e.name for e in list_datasets(ctx.workspace)], multiselect=True, label=text.DATASET_PICK_LABEL,
            info=text.DATASET_PICK_INFO, scale=4, elem_id="train-dataset-pick",
        )  # fmt: skip
        w["percent"] = gr.Slider(
            1, 100, value=100, step=1, label=text.PERCENT_LABEL, scale=2, elem_id="train-percent"
        )
        w["use"] = gr.Button(text.USE_DATASETS_BUTTON, scale=0, min_width=100, elem_id="train-use-datasets")
    w["fields"] = forms.build_essentials(values, custom)
    with gr.Row():
        w["reset"] = gr.Button(text.RESET_BUTTON, elem_id="train-reset")
        w["check"] = gr.Button(text.PREVIEW_BUTTON, elem_id="train-check")
        w["launch"] = gr.Button(text.LAUNCH_BUTTON, variant="primary", elem_id="train-launch")
    w["status"] = gr.Markdown(elem_id="train-status")
    with gr.Column(visible=False, elem_id="train-preflight") as w["preflight"]:
        w["table"] = gr.Dataframe(
            headers=text.PREFLIGHT_HEADERS, label=text.PREFLIGHT_TABLE_LABEL, interactive=False, wrap=True,
            max_height=320, elem_id="train-preflight-table",
        )  # fmt: skip
        w["cost"] = gr.Markdown(elem_id="train-preflight-cost")
    gr.Markdown(text.MORE_SETTINGS)
    more, w["accordions"] = forms.build_sections(values, preset, custom)
    w["fields"].update(more)
    with gr.Accordion(text.YAML_IO_HEADING, open=False, elem_id="train-section-yaml") as w["yaml_section"]:
        w["yaml"] = gr.Code(
            value=preset.to_yaml(), label=text.YAML_IO_LABEL, language="yaml", interactive=True, max_lines=24,
            elem_id="train-yaml",
        )  # fmt: skip
        with gr.Row():
            w["load_yaml"] = gr.Button(text.LOAD_YAML_BUTTON, elem_id="train-load-yaml")
            w["download"] = gr.DownloadButton(text.DOWNLOAD_YAML_BUTTON, elem_id="train-download-yaml")
        w["command"] = gr.Code(
            label=text.COMMAND_LABEL,
            language="shell",
            interactive=False,
            wrap_lines=True,
            elem_id="train-command",
        )
    return w


def create_train_tab(ctx: StudioContext, supervisor: Supervisor) -> dict[str, Any]:
    """Build the tab in the current gr.Tab; returns key widgets (``launch``, ``last_run``, ``status``)."""
    import gradio as gr

    w = build_layout(ctx)
    h = TrainHandlers(ctx, supervisor)
    inputs = [w["fields"][n] for n in h.names]
    for section, accordion in w["accordions"].items():
        section_widgets = [w["fields"][f.name] for f in forms.section_fields(section)]
        gr.on(
            [x.change for x in section_widgets] + [w["preset_mode"].change],
            h.section_labeller(section),
            [w["preset_mode"], *section_widgets],
            accordion,
            show_progress="hidden",
            trigger_mode="always_last",
        )
    pick = w["pick"]

    def refresh_pick(current: list[str] | None) -> Any:
        names = choices.dataset_names(choices.read_datasets(ctx.workspace))
        return gr.Dropdown(choices=names, value=[n for n in current or [] if n in names])

    pick.focus(refresh_pick, pick, pick)
    w["use"].click(
        h.use, [pick, w["percent"], w["preset_mode"], *inputs], [w["status"], w["preset_mode"], *inputs]
    ).then(h.form_yaml, inputs, [w["yaml"], w["command"]], show_progress="hidden")
    # The YAML box shows the form as it is when opened, not the preset it was built with.
    w["yaml_section"].expand(h.form_yaml, inputs, [w["yaml"], w["command"]], show_progress="hidden")
    check_outputs = [
        w["status"],
        w["preflight"],
        w["table"],
        w["cost"],
        w["yaml"],
        w["command"],
        w["download"],
    ]
    w["check"].click(h.check, inputs, check_outputs)
    launch_event = w["launch"].click(h.launch, inputs, [w["status"], w["yaml"], w["command"], w["last_run"]])
    sized = w["pixels_family"]
    w["reset"].click(h.reset, w["preset_mode"], [*inputs, sized]).then(
        h.form_yaml, inputs, [w["yaml"], w["command"]], show_progress="hidden"
    )
    w["reward_upload"].upload(h.upload_reward, w["reward_upload"], w["reward_upload_status"])
    w["load_yaml"].click(h.load_yaml, [w["yaml"], w["preset_mode"], *inputs], [w["status"], *inputs, sized])
    # Only the user's pick rescales (.input): a preset or YAML brings its own budgets with its model.
    pixels = [w["fields"][n] for n in models.PIXEL_FIELDS]
    model = w["fields"]["model_name_or_path"]
    # A closed section's widgets are not mounted and fire no change: recount their section here.
    section = field_index()["min_pixels"][0]
    recount = [w["preset_mode"], *[w["fields"][f.name] for f in forms.section_fields(section)]]
    model.input(h.choose_model, [model, sized, *pixels], [w["status"], *pixels, sized]).then(
        h.section_labeller(section), recount, w["accordions"][section], show_progress="hidden"
    )
    return {
        "launch": w["launch"],
        "launch_event": launch_event,
        "last_run": w["last_run"],
        "status": w["status"],
        "widgets": w["fields"],
        "accordions": w["accordions"],
        "refresh": Refresh(refresh_pick, [pick], [pick]),
    }
