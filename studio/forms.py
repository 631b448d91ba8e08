"""The training form, generated from TrainConfig's dataclass fields: no hand-kept widget list.

Each field becomes one widget (bool -> checkbox, int/float -> number, str -> textbox) labelled by
its name, with its ``metadata["help"]`` as info text, grouped by config section. Values go back
through ``trainer.config.build_config``, so the form validates exactly like the YAML and the CLI.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio import text
from trainer.config import SECTIONS, TrainConfig, build_config, field_index, field_type, load_yaml
from trainer.paths import REPO_ROOT, TINY_MODEL_DIR

PRESET_PATH = REPO_ROOT / "configs" / "tiny_cpu.yaml"
# Fields the studio fills in itself for every launch (so the form leaves them empty by default).
MANAGED_FIELDS = ("workspace", "db")


@dataclass(frozen=True)
class FormField:
    """One config field as the form sees it."""

    name: str
    section: str
    type: type
    default: Any
    help: str
    optional: bool  # None is a valid value (e.g. total_pixels)


def form_fields() -> list[FormField]:
    """Every TrainConfig field, in section order then declaration order."""
    out = []
    for name, (section, f) in field_index().items():
        cls = SECTIONS[section]
        typ = field_type(f, cls)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        optional = "None" in str(f.type)
        out.append(FormField(name, section, typ, default, f.metadata.get("help", ""), optional))
    return out


def field_values(cfg: TrainConfig) -> dict[str, Any]:
    """``{field: value}`` of a config, in form order."""
    return cfg.flat()


def config_from_values(values: Mapping[str, Any]) -> TrainConfig:
    """Widget values -> a validated TrainConfig; raises ConfigError naming the field.

    An emptied number box means the field's default (or None where None is allowed).
    """
    fields = {f.name: f for f in form_fields()}
    clean: dict[str, Any] = {}
    for name, value in values.items():
        f = fields[name]
        if f.type in (int, float) and (value is None or value == ""):
            clean[name] = None if f.optional else f.default
        elif f.type is int and isinstance(value, float) and value.is_integer():
            clean[name] = int(value)
        elif f.type is str and value is None:
            clean[name] = ""
        else:
            clean[name] = value
    return build_config(clean)


def load_preset(path: Path = PRESET_PATH) -> TrainConfig:
    """The form's starting point: the tiny-CPU preset if present, else TrainConfig defaults.

    A relative model path that exists under the repository is made absolute, so the studio works
    from any current folder.
    """
    values = load_yaml(path) if path.is_file() else {}
    cfg = build_config(values)
    model = Path(cfg.model.model_name_or_path)
    if not model.is_absolute() and (REPO_ROOT / model).exists():
        cfg = dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, model_name_or_path=str(REPO_ROOT / model))
        )
    elif not cfg.model.model_name_or_path:
        cfg = dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, model_name_or_path=str(TINY_MODEL_DIR))
        )
    return cfg


def command_line(cfg: TrainConfig, skip: Sequence[str] = ()) -> str:
    """``vgrpo train --name value ...`` with every field that differs from TrainConfig's defaults."""
    defaults = TrainConfig().flat()
    parts = ["vgrpo", "train"]
    for name, value in cfg.flat().items():
        if name in skip or value == defaults[name] or value is None:
            continue
        parts += [f"--{name}", str(value).lower() if isinstance(value, bool) else str(value)]
    return shlex.join(parts)


# ---- widgets ------------------------------------------------------------------------------------

WidgetFactory = Callable[[FormField, Any], Any]
ROW_SIZE = 3


def make_widget(f: FormField, value: Any) -> Any:
    """The default widget for a field (must be called inside a Gradio Blocks context)."""
    import gradio as gr

    common = {"label": f.name, "info": f.help, "elem_id": f"train-{f.name}", "min_width": 220}
    if f.type is bool:
        return gr.Checkbox(value=bool(value), **common)
    if f.type is int:
        return gr.Number(value=value, precision=0, **common)
    if f.type is float:
        return gr.Number(value=value, **common)
    return gr.Textbox(value="" if value is None else str(value), **common)


def build_form(
    values: Mapping[str, Any],
    custom: Mapping[str, WidgetFactory] | None = None,
    open_sections: Sequence[str] = (),
) -> dict[str, Any]:
    """One accordion per config section holding one widget per field; returns ``{field: widget}``.

    ``custom`` replaces the widget of some fields (e.g. a model dropdown); ``values`` are the
    initial values (usually ``field_values(load_preset())``).
    """
    import gradio as gr

    custom = custom or {}
    widgets: dict[str, Any] = {}
    fields = form_fields()
    for section in SECTIONS:
        in_section = [f for f in fields if f.section == section]
        with gr.Accordion(
            text.SECTION_TITLES[section], open=section in open_sections, elem_id=f"train-section-{section}"
        ):
            for start in range(0, len(in_section), ROW_SIZE):
                with gr.Row():
                    for f in in_section[start : start + ROW_SIZE]:
                        factory = custom.get(f.name, make_widget)
                        widgets[f.name] = factory(f, values.get(f.name, f.default))
    return widgets
