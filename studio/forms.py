"""The training form, generated from TrainConfig's dataclass fields: no hand-kept widget list.

Each field becomes one widget labelled by its name with its ``metadata["help"]`` as info text: a
checkbox for a bool, a table for a structured value (the ``grpo.rewards`` list: rows of name, function,
weight, parsed by ``RewardList.parse_config``), a one-line text box for anything else. Numbers are
typed as text on purpose: a number widget rounds 2.5 to 2 for an integer field, turns "abc" into an
empty value and an empty optional box into 0; a text box hands over exactly what was typed, and
``trainer.core.config``'s parser then accepts it or names the field, exactly as it does for the YAML
and the CLI flags.

The essentials (model, datasets, the seven seed knobs, the step/time budget) come first; the other
fields sit in one collapsed section per config concern whose label counts the fields changed from
the preset.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio import text
from trainer.core.config import (
    SECTIONS,
    TrainConfig,
    build_config,
    field_index,
    field_type,
    is_optional,
    load_yaml,
    merge,
    parse_value,
)
from trainer.core.errors import ConfigError
from trainer.core.paths import REPO_ROOT, TINY_MODEL_DIR
from trainer.data.prompts import NO_THINK, THINK

# One tiny-CPU preset per answer format: think completions are ~2x longer (a think block before
# the answer), so they need their own generation_max_length.
PRESET_PATHS = {
    NO_THINK: REPO_ROOT / "configs" / "tiny_cpu.yaml",
    THINK: REPO_ROOT / "configs" / "tiny_cpu_think.yaml",
}
PRESET_PATH = PRESET_PATHS[NO_THINK]  # the form's starting point
# Fields the studio fills in itself for every launch (so the form leaves them empty by default).
MANAGED_FIELDS = ("workspace", "db")
# On the first screen, in this order: what a run is about and the seed's knobs.
ESSENTIALS = (
    "model_name_or_path",
    "dataset_use",
    "eval_dataset_use",
    "grpo_alpha",
    "grpo_beta",
    "format_reward_weight",
    "accuracy_reward_weight",
    "grpo_sample_size",
    "grpo_logging_steps",
    "generation_max_length",
    "max_steps",
    "max_train_seconds",
)


@dataclass(frozen=True)
class FormField:
    """One config field as the form sees it."""

    name: str
    section: str
    type: type
    default: Any
    help: str
    optional: bool  # None (an empty box) is a valid value, e.g. total_pixels


def form_fields() -> list[FormField]:
    """Every TrainConfig field, in section order then declaration order."""
    out = []
    for name, (section, f) in field_index().items():
        cls = SECTIONS[section]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        typ, optional = field_type(f, cls), is_optional(f, cls)
        default = comparable(default)  # as flat() holds it: the rewards list as YAML mappings
        out.append(FormField(name, section, typ, default, f.metadata.get("help", ""), optional))
    return out


def section_fields(section: str) -> list[FormField]:
    """The fields of ``section`` that are not essentials (what its collapsed section holds)."""
    return [f for f in form_fields() if f.section == section and f.name not in ESSENTIALS]


def is_table(f: FormField) -> bool:
    """A structured value (the rewards list) shown as a table, not a text box."""
    return hasattr(f.type, "parse_config")


def widget_value(value: Any) -> Any:
    """A config value as its widget shows it: bools as they are, None as an empty box, a list (the
    rewards, as ``TrainConfig.flat`` writes it) as table rows, the rest as text (``repr`` of a float
    keeps every digit: 2e-05, 0.1)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, list | tuple):
        return table_rows(value)
    return "" if value is None else str(value)


def table_rows(entries: Sequence[Any]) -> list[list[Any]]:
    """The rewards list (specs, or their YAML mappings) -> ``[name, function, weight]`` rows; a
    built-in's function is an empty cell."""
    rows = []
    for entry in entries:
        item = entry.to_dict() if hasattr(entry, "to_dict") else dict(entry)
        rows.append([item.get("name") or "", item.get("function") or "", item.get("weight")])
    return rows


def field_values(cfg: TrainConfig) -> dict[str, Any]:
    """``{field: widget value}`` of a config, in form order."""
    return {name: widget_value(value) for name, value in cfg.flat().items()}


def config_from_values(values: Mapping[str, Any]) -> TrainConfig:
    """Widget values -> a validated TrainConfig; raises ConfigError naming the field.

    The values go through ``build_config`` unchanged, so the form is parsed exactly like the YAML
    and the flags: an empty box is None where the field allows it and an error elsewhere.
    """
    unknown = [name for name in values if name not in field_index()]
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}")
    return build_config({name: table_value(value) for name, value in values.items()})


def table_value(value: Any) -> Any:
    """A table's rows as the config parser takes them (a pandas frame as its rows), without the rows
    the table's + button adds and nobody filled: no name, no function and a weight of 0 or none (a
    number column starts at 0, so the parser would not see such a row as blank). A row with only a
    weight is kept: the parser names it."""
    if hasattr(value, "values") and hasattr(value, "columns"):  # a pandas DataFrame
        value = value.values.tolist()
    if not isinstance(value, list) or not all(isinstance(row, list | tuple) for row in value):
        return value
    return [row for row in value if not _is_unfilled(row)]


def _is_unfilled(row: Sequence[Any]) -> bool:
    def empty(cell: Any) -> bool:
        return cell is None or (isinstance(cell, str) and not cell.strip())

    *text_cells, weight = row if len(row) else [None]
    return all(empty(c) for c in text_cells) and (empty(weight) or weight in (0, "0"))


def value_text(value: Any) -> str:
    """A widget value as one line, for saying what changed: table rows as ``[name function weight,
    ...]`` without the blank rows (a weight typed 1 and 1.0 read the same)."""
    if not isinstance(value, list | tuple):
        return str(value)
    rows = []
    for row in table_value(value):
        cells = ["" if c is None else str(c).strip() for c in row]
        if not any(cells):
            continue
        try:
            cells[-1] = f"{float(cells[-1]):g}"
        except ValueError:
            pass  # shown as typed
        rows.append(" ".join(c for c in cells if c))
    return "[" + ", ".join(rows) + "]"


def comparable(value: Any) -> Any:
    """A parsed value as the preset's ``flat()`` holds it (the rewards list as YAML mappings)."""
    return value.to_config() if hasattr(value, "to_config") else value


def load_preset(path: Path = PRESET_PATH) -> TrainConfig:
    """A preset file as a config (TrainConfig defaults when the file is missing).

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


def preset_for_mode(mode: str) -> TrainConfig:
    """The tiny-CPU preset for an answer format (think or no_think)."""
    return load_preset(PRESET_PATHS[mode])


def mode_knobs() -> list[str]:
    """The fields the think and no_think presets set differently, datasets aside (what switching
    the answer format has to change, e.g. generation_max_length)."""
    a, b = preset_for_mode(THINK).flat(), preset_for_mode(NO_THINK).flat()
    return [n for n in a if a[n] != b[n] and n not in ("dataset_use", "eval_dataset_use")]


def values_from_yaml(yaml_text: str, base: TrainConfig) -> dict[str, Any]:
    """Pasted YAML (flat or sectioned keys) applied on ``base`` -> widget values; raises ConfigError."""
    import yaml

    try:
        data = yaml.safe_load(yaml_text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"pasted config is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"pasted config: expected a mapping of config keys, got {type(data).__name__}")
    return field_values(build_config(merge(base.to_dict(), data)))


def changed_fields(values: Mapping[str, Any], preset: TrainConfig, names: Sequence[str]) -> list[str]:
    """Which of ``names`` differ from the preset. A value that does not parse counts as changed."""
    fields = {f.name: f for f in form_fields()}
    reference = preset.flat()
    changed = []
    for name in names:
        f = fields[name]
        try:
            value = parse_value(name, table_value(values[name]), f.type, f.optional)
        except ConfigError:
            changed.append(name)
            continue
        if comparable(value) != reference[name]:
            changed.append(name)
    return changed


def section_label(section: str, changed: int) -> str:
    """``Video sampling`` or ``Video sampling · 2 changed from the preset``."""
    title = text.SECTION_TITLES[section]
    return title if not changed else text.SECTION_CHANGED.format(title=title, count=changed)


def command_line(cfg: TrainConfig, skip: Sequence[str] = ()) -> str:
    """``vgrpo train --name value ...`` with every field that differs from TrainConfig's defaults."""
    defaults = TrainConfig().flat()
    parts = ["vgrpo", "train"]
    for name, value in cfg.flat().items():
        if name in skip or value == defaults[name] or value is None:
            continue
        if isinstance(value, list):  # the rewards list: JSON, which the flag's parser reads as YAML
            parts += [f"--{name}", json.dumps(value)]
            continue
        parts += [f"--{name}", str(value).lower() if isinstance(value, bool) else str(value)]
    return shlex.join(parts)


# ---- widgets ------------------------------------------------------------------------------------

WidgetFactory = Callable[[FormField, Any], Any]
ROW_SIZE = 3


def make_widget(f: FormField, value: Any) -> Any:
    """The default widget for a field (must be called inside a Gradio Blocks context)."""
    import gradio as gr

    if is_table(f):
        return table_widget(f, value)
    common = {"label": f.name, "info": f.help, "elem_id": f"train-{f.name}", "min_width": 220}
    if f.type is bool:
        return gr.Checkbox(value=bool(value), **common)
    placeholder = text.EMPTY_MEANS_UNSET if f.optional else None
    return gr.Textbox(value=widget_value(value), lines=1, max_lines=1, placeholder=placeholder, **common)


TABLE_HEADERS = ["name", "function", "weight"]


def table_widget(f: FormField, value: Any) -> Any:
    """The rewards list as an editable table (rows added with its + button): what the table means above
    it (``text.REWARDS_TABLE_INFO``, the field's help in the form's words), since a Dataframe has no
    info line. Hands its rows over as a list of lists."""
    import gradio as gr

    gr.Markdown(text.REWARDS_TABLE_INFO, elem_id=f"train-{f.name}-info", elem_classes=["vgrpo-field-info"])
    return gr.Dataframe(
        value=widget_value(value) if isinstance(value, list | tuple) else value,
        headers=TABLE_HEADERS,
        datatype=["str", "str", "number"],
        type="array",
        interactive=True,
        # Three columns, none added or removed: Gradio 6.x warns that column_limits is "not yet
        # implemented", while its (count, "fixed") form is what the page reads.
        column_count=(len(TABLE_HEADERS), "fixed"),  # type: ignore[arg-type]
        row_count=1,
        label=f.name,
        elem_id=f"train-{f.name}",
    )


def build_rows(
    fields: Sequence[FormField], values: Mapping[str, Any], custom: Mapping[str, WidgetFactory] | None = None
) -> dict[str, Any]:
    """Widgets for ``fields``, ROW_SIZE to a row (a table gets a row of its own); returns
    ``{field: widget}``."""
    import gradio as gr

    custom = custom or {}
    widgets: dict[str, Any] = {}
    for row in _rows(fields):
        with gr.Row():
            for f in row:
                factory = custom.get(f.name, make_widget)
                widgets[f.name] = factory(f, values.get(f.name, widget_value(f.default)))
    return widgets


def _rows(fields: Sequence[FormField]) -> list[list[FormField]]:
    """The fields in rows of at most ROW_SIZE, each table alone on its row (it needs the width)."""
    rows: list[list[FormField]] = []
    current: list[FormField] = []
    for f in fields:
        if is_table(f):
            rows += [current, [f]] if current else [[f]]
            current = []
            continue
        current.append(f)
        if len(current) == ROW_SIZE:
            rows.append(current)
            current = []
    return rows + [current] if current else rows


def build_essentials(
    values: Mapping[str, Any], custom: Mapping[str, WidgetFactory] | None = None
) -> dict[str, Any]:
    """The essential fields, in ESSENTIALS order."""
    by_name = {f.name: f for f in form_fields()}
    return build_rows([by_name[n] for n in ESSENTIALS], values, custom)


def build_sections(
    values: Mapping[str, Any], preset: TrainConfig, custom: Mapping[str, WidgetFactory] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One collapsed accordion per config section with its non-essential fields.

    Returns ``({field: widget}, {section: accordion})``; each label counts the changed fields.
    """
    import gradio as gr

    widgets: dict[str, Any] = {}
    accordions: dict[str, Any] = {}
    for section in SECTIONS:
        fields = section_fields(section)
        if not fields:
            continue
        count = len(changed_fields(values, preset, [f.name for f in fields]))
        label = section_label(section, count)
        with gr.Accordion(label, open=False, elem_id=f"train-section-{section}") as acc:
            widgets.update(build_rows(fields, values, custom))
        accordions[section] = acc
    return widgets, accordions


# ---- "Use" on picked datasets --------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetChoice:
    """What pressing Use changes in the form, and the sentence that says so."""

    values: dict[str, Any]  # only the fields that change
    mode: str | None  # the picked datasets' answer format (None: mixed or unknown)
    message: str


def matching_eval_sets(names: Sequence[str], entries: Mapping[str, Any]) -> list[str]:
    """For ``x_train`` the registered ``x_eval`` with the same answer format, per picked name."""
    out = []
    for name in names:
        if "train" not in name:
            continue
        head, _, tail = name.rpartition("train")
        candidate = f"{head}eval{tail}"
        if candidate in entries and entries[candidate].mode == entries[name].mode:
            out.append(candidate)
    return out


def choose_datasets(
    names: Sequence[str], percent: float, current: Mapping[str, Any], entries: Mapping[str, Any]
) -> DatasetChoice:
    """The form changes for Use: dataset_use, the matching eval set, and - when the answer format
    differs from the current one - the knobs the think and no_think presets set differently
    (generation_max_length), but only where the form still holds the other preset's value."""
    if not names:
        return DatasetChoice({}, None, text.PICK_DATASETS_FIRST)
    suffix = "" if percent >= 100 else f"%{percent:g}"
    changes: dict[str, Any] = {"dataset_use": ",".join(f"{n}{suffix}" for n in names)}
    modes = {entries[n].mode for n in names if n in entries}
    mode = modes.pop() if len(modes) == 1 else None
    notes = [f"dataset_use = {changes['dataset_use']}"]
    evals = matching_eval_sets(names, entries)
    if evals:
        changes["eval_dataset_use"] = ",".join(evals)
        notes.append(f"eval_dataset_use = {changes['eval_dataset_use']}")
    elif current.get("eval_dataset_use"):
        current_evals = [e.strip().split("%")[0] for e in str(current["eval_dataset_use"]).split(",")]
        if mode is not None and any(entries.get(e) and entries[e].mode != mode for e in current_evals):
            changes["eval_dataset_use"] = ""
            notes.append(f"eval_dataset_use cleared (it was not {mode})")
    if mode is not None:
        target = field_values(preset_for_mode(mode))
        other = field_values(preset_for_mode(NO_THINK if mode == THINK else THINK))
        for knob in mode_knobs():
            if str(current.get(knob)) == str(other[knob]) and other[knob] != target[knob]:
                changes[knob] = target[knob]
                notes.append(f"{knob} {other[knob]} -> {target[knob]} ({mode} preset)")
    return DatasetChoice(changes, mode, text.DATASETS_USED.format(changes="; ".join(notes)))
