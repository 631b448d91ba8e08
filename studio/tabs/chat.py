"""Chat tab: ask two models the same question about a video and watch both answers stream side by side.

A model is a run's checkpoint ("run name · step N"), a run's base model, the embedded tiny model
or any local folder typed into the dropdown. The question can be typed, or filled from a dataset
record (video, question and options, and the prompt format), in which case each answer is also
marked right or wrong. Loading, prompting and streaming live in :mod:`studio.chat_engine`; this
module only wires widgets to it. Every failure becomes a message in the pane that hit it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio import choices, problems
from studio.chat_engine import (
    IMAGE_SUFFIXES,
    ChatSettings,
    ModelCache,
    answer_messages,
    chat_conversation,
    parse_question,
    sample_question,
    stream_answers,
    verdict,
)
from studio.context import StudioContext
from studio.live import Refresh
from studio.models import embedded_origin, model_label
from trainer.core.errors import StudioError
from trainer.core.paths import TINY_MODEL_DIR
from trainer.data import MCQRecord
from trainer.data.problem_types import MULTIPLE_CHOICE
from trainer.data.prompts import NO_THINK, THINK
from trainer.data.registry import load_dataset_use
from trainer.model.families import FAMILIES

logger = logging.getLogger(__name__)
# A frame must hold at least one visual token of the chosen model; the smallest any family has.
SMALLEST_VISUAL_TOKEN_PX = min(family.pixels_per_token for family in FAMILIES.values())

INTRO = (
    "Ask two models the same question about one video; both answers stream side by side, the "
    "reasoning in a collapsible *think* block and the answer in bold. Pick a checkpoint, a run's base "
    "model, the embedded tiny model, or type a model folder. Write options as `(A) ...` lines to get "
    "the training prompt (or load a dataset sample)."
)
MODEL_INFO = "A run's checkpoint or base model, the tiny model, or type a local model folder."
NO_QUESTION = "Type a question (or load a dataset sample) first."
# Under the pickers whenever a pane holds an embedded tiny model, or a checkpoint trained from one.
TINY_NOTE = (
    "**{panes}** {what} `{model}`: a tiny model trained only on the synthetic motion task; "
    "it writes nonsense on real videos."
)
# (is a checkpoint, both panes) -> what the note says the pane holds.
TINY_WHAT = {
    (False, False): "is the embedded tiny model",
    (True, False): "was trained from the embedded tiny model",
    (False, True): "are the embedded tiny model",
    (True, True): "were trained from the embedded tiny model",
}
DEFAULTS = ChatSettings()
CACHE_SIZE = 2


def sample_fields(ctx: StudioContext, dataset: str | None, index: float | None) -> tuple[MCQRecord, int]:
    """The record ``index`` of ``dataset`` (schema and file checks only: the chat decodes it anyway)."""
    if not dataset:
        raise StudioError("pick a dataset first")
    records = load_dataset_use(dataset, ctx.workspace, seed=0, check_videos=False)
    i = int(index or 0)
    if not 0 <= i < len(records):
        raise StudioError(f"dataset {dataset} has records 0..{len(records) - 1}; there is no record {i}")
    return records[i], len(records)


def _default_dataset(names: list[str]) -> str | None:
    """An eval split when there is one: chatting about training questions says little."""
    evals = [n for n in names if n.endswith("eval")]
    return (evals or names or [None])[0]


def chat_defaults(
    runs: Sequence[choices.RunModels], tiny_dir: str | Path = TINY_MODEL_DIR
) -> tuple[str, str]:
    """What the panes start on (and fall back to when their pick is gone): B the newest checkpoint
    of the newest training run that has one, A that run's base model (before vs after training).
    Without a checkpoint: A the tiny model, B the newest run's base model, else the tiny model too."""
    tiny = str(tiny_dir)
    trained = [m for m in runs if not m.run.is_model]
    for models in trained:  # newest run first
        if models.checkpoints:
            return models.base_model or tiny, models.checkpoints[-1].path
    newest_base = trained[0].base_model if trained else None
    return tiny, newest_base or tiny


def keep_pick(
    offered: choices.Choices,
    current: str | None,
    default: str,
    shown: Collection[str],
    shown_default: str | None,
) -> str:
    """A pane's pick after the model list is read again. ``default`` (:func:`chat_defaults`, as
    now) when the pane still shows the default it was given (``shown_default``: a run trained
    since moves it on) or when its pick is gone: a checkpoint removed, or a value the list
    ``shown`` before and no longer offers (its run deleted: :meth:`choices.Choices.keep`).
    Anything else, a pick or a typed folder or hub id, is kept."""
    if current == shown_default:
        current = None
    return offered.keep(current, default=default, shown=shown)


def model_note(path_a: str | None, path_b: str | None) -> str:
    """A line per pane whose model is an embedded tiny model or was trained from one (one line
    for both when they say the same)."""
    said: dict[tuple[bool, str], list[str]] = {}
    for pane, value in (("A", path_a), ("B", path_b)):
        origin = embedded_origin(value)
        if origin is not None:
            model, is_checkpoint = origin
            said.setdefault((is_checkpoint, model_label(model)), []).append(pane)
    lines = []
    for (is_checkpoint, model), panes in said.items():
        both = len(panes) > 1
        names = "Models A and B" if both else f"Model {panes[0]}"
        lines.append(TINY_NOTE.format(panes=names, what=TINY_WHAT[is_checkpoint, both], model=model))
    return "\n\n".join(lines)


def user_message(question: str, media: str | None) -> dict[str, Any]:
    name = f"*video* `{Path(media).name}`\n\n" if media else ""
    return {"role": "user", "content": f"{name}{question.strip()}"}


@dataclass(frozen=True)
class ChatWidgets:
    """The widgets the tab's events read or write."""

    # gr.State {"question": text as loaded, "answer": letter}: answers are judged while the text is unchanged.
    sample: Any
    # gr.State {"values": the models the pickers offered last, "defaults": [A's, B's] then}: a pick
    # that left the list is replaced, a pane still on its default follows the newest checkpoint.
    offered: Any
    model_a: Any
    model_b: Any
    model_note: Any
    refresh: Any
    video: Any
    image: Any
    sample_dataset: Any
    sample_index: Any
    load_sample: Any
    sample_info: Any
    question: Any
    mode: Any
    ask: Any
    clear: Any
    settings: list[Any]  # in settings_from's argument order
    pane_a: Any
    pane_b: Any
    status: Any


class ChatHandlers:
    """What the tab's events do; every failure becomes a message in the pane (or line) it hit."""

    def __init__(self, ctx: StudioContext, cache: ModelCache) -> None:
        self.ctx = ctx
        self.cache = cache

    def models(self) -> tuple[choices.Choices, tuple[str, str]]:
        """The pickers' choices and the panes' defaults (:func:`chat_defaults`), read now."""
        try:
            runs = choices.read_chat_runs(self.ctx.store)
        except StudioError as exc:  # an unreadable run DB still leaves the tiny model and typed paths
            logger.warning("chat: cannot list runs: %s", exc)
            runs = []
        return choices.model_choices(runs), chat_defaults(runs)

    def dataset_names(self) -> list[str]:
        return choices.dataset_names(choices.read_datasets(self.ctx.workspace))

    def shown(self) -> tuple[choices.Choices, dict[str, Any]]:
        """The choices and defaults as now, and the pickers' state that records them."""
        offered, defaults = self.models()
        return offered, {"values": offered.values, "defaults": list(defaults)}

    def on_refresh(self, a: str | None, b: str | None, before: dict | None = None) -> tuple[Any, Any, dict]:
        """Both model lists as the run DB and the disk are now, and the new pickers' state (what
        they offered and defaulted to, the next refresh's ``before``). Each pane goes through
        :func:`keep_pick`: on to the newest checkpoint while it showed the default, back to the
        default when its pick is gone, else kept."""
        import gradio as gr

        offered, state = self.shown()
        before = before or {}
        shown, old_defaults = before.get("values", []), before.get("defaults", [None, None])
        picks = [
            keep_pick(offered, current, default, shown, old_default)
            for current, default, old_default in zip((a, b), state["defaults"], old_defaults, strict=True)
        ]
        return (
            gr.Dropdown(choices=offered.items, value=picks[0], allow_custom_value=True),
            gr.Dropdown(choices=offered.items, value=picks[1], allow_custom_value=True),
            state,
        )

    def on_show(
        self, a: str | None, b: str | None, dataset: str | None, before: dict | None = None
    ) -> tuple[Any, Any, Any, dict]:
        import gradio as gr

        names = self.dataset_names()
        value = dataset if dataset in names else _default_dataset(names)
        model_a, model_b, state = self.on_refresh(a, b, before)
        return model_a, model_b, gr.Dropdown(choices=names, value=value), state

    def on_load_sample(self, dataset: str | None, index: float | None) -> tuple:
        import gradio as gr

        try:
            record, total = sample_fields(self.ctx, dataset, index)
        except StudioError as exc:
            cannot = problems.error_markdown(exc, "Cannot load sample")
            return (gr.skip(), gr.skip(), gr.skip(), gr.skip(), None, cannot)
        text_ = sample_question(record)
        media = record.video or record.image
        is_image = Path(media).suffix.lower() in IMAGE_SUFFIXES
        # "0 of 0..199" read as nonsense: say what the number is.
        position = f"record number {int(index or 0)} of {total}, counted from 0"
        answer = (
            f"({record.answer})" if record.is_multiple_choice else f"{record.answer} ({record.problem_type})"
        )
        info = f"Record **{record.id}** ({position}) · answer **{answer}**"
        return (
            gr.Video(value=None if is_image else media, visible=not is_image),
            gr.Image(value=media if is_image else None, visible=is_image),
            text_,
            record.mode,
            {"question": text_, "answer": record.answer, "problem_type": record.problem_type},
            info,
        )

    def on_ask(
        self,
        path_a: str | None,
        path_b: str | None,
        video_path: str | None,
        image_path: str | None,
        question_text: str,
        answer_mode: str,
        loaded_sample: dict | None,
        history_a: list | None,
        history_b: list | None,
        *settings_values: Any,
    ) -> Iterator[tuple]:
        history_a, history_b = list(history_a or []), list(history_b or [])
        if not (question_text or "").strip():
            yield history_a, history_b, NO_QUESTION
            return
        media = video_path or image_path
        try:
            settings = settings_from(*settings_values)
            messages = chat_conversation(media, question_text, answer_mode, settings.video_config())
        except (StudioError, ValueError, TypeError, OSError) as exc:
            yield history_a, history_b, problems.error_markdown(exc, "Cannot ask")
            return
        _, options = parse_question(question_text)
        is_sample = bool(loaded_sample and loaded_sample["question"] == question_text)
        correct = loaded_sample["answer"] if is_sample else None
        problem_type = loaded_sample.get("problem_type", MULTIPLE_CHOICE) if is_sample else MULTIPLE_CHOICE
        asked = user_message(question_text, media)
        states: list = []
        try:
            for states in stream_answers(self.cache, [path_a or "", path_b or ""], messages, settings):
                panes = []
                for state, history in zip(states, (history_a, history_b), strict=True):
                    footer = None
                    if state.status == "done":
                        footer = (
                            f"{verdict(state.text, options, answer_mode, correct, problem_type)} · "
                            f"{state.seconds:.1f} s"
                        )
                    panes.append([*history, asked, *answer_messages(state, footer)])
                yield panes[0], panes[1], _status_line(states)
        except Exception as exc:  # a process edge: whatever breaks, the app keeps running
            logger.exception("chat: answering failed")
            yield history_a, history_b, problems.error_markdown(exc, "Error")


def _model_pickers(initial: list[tuple[str, str]], defaults: list[str]) -> tuple[Any, Any, Any, Any]:
    """Model A and Model B on their defaults (:func:`chat_defaults`), the note on a tiny model
    under them and the list's refresh button."""
    import gradio as gr

    with gr.Row():
        model_a = gr.Dropdown(
            initial, value=defaults[0], label="Model A", info=MODEL_INFO,
            allow_custom_value=True, elem_id="chat-model-a", scale=4,
        )  # fmt: skip
        model_b = gr.Dropdown(
            initial, value=defaults[1], label="Model B", info=MODEL_INFO,
            allow_custom_value=True, elem_id="chat-model-b", scale=4,
        )  # fmt: skip
    note = gr.Markdown(model_note(*defaults), elem_id="chat-model-note")
    refresh = gr.Button("↻ Refresh model list", size="sm", elem_id="chat-refresh-models")
    return model_a, model_b, note, refresh


def _sample_accordion(dataset_names: list[str]) -> tuple[Any, Any, Any, Any]:
    """Dataset, record index, load button and the loaded record's line."""
    import gradio as gr

    with gr.Accordion("Dataset sample", open=False, elem_id="chat-sample"):
        with gr.Row():
            sample_dataset = gr.Dropdown(
                dataset_names, value=_default_dataset(dataset_names), label="Dataset",
                scale=3, elem_id="chat-sample-dataset",
            )  # fmt: skip
            sample_index = gr.Number(
                value=0, precision=0, minimum=0, label="Record", scale=1, elem_id="chat-sample-index"
            )
        load_sample = gr.Button("Load sample", size="sm", elem_id="chat-sample-load")
        sample_info = gr.Markdown(elem_id="chat-sample-info")
    return sample_dataset, sample_index, load_sample, sample_info


def _settings_accordion() -> list[Any]:
    """The shared generation and video settings, in :func:`settings_from`'s argument order."""
    import gradio as gr

    with gr.Accordion("Generation and video settings (shared)", open=False, elem_id="chat-settings"):
        with gr.Row():
            max_new_tokens = gr.Slider(
                8, 2048, value=DEFAULTS.max_new_tokens, step=8, label="Max new tokens",
                elem_id="chat-max-new-tokens",
            )  # fmt: skip
            greedy = gr.Checkbox(value=DEFAULTS.greedy, label="Greedy (no sampling)", elem_id="chat-greedy")
        with gr.Row():
            temperature = gr.Slider(
                0.05, 2.0, value=DEFAULTS.temperature, step=0.05, label="Temperature",
                elem_id="chat-temperature",
            )  # fmt: skip
            top_p = gr.Slider(0.05, 1.0, value=DEFAULTS.top_p, step=0.05, label="Top p", elem_id="chat-top-p")
        with gr.Row():
            fps = gr.Number(value=DEFAULTS.fps, minimum=0.1, label="Video fps", elem_id="chat-fps")
            max_frames = gr.Number(
                value=DEFAULTS.max_frames,
                precision=0,
                minimum=2,
                label="Max frames",
                elem_id="chat-max-frames",
            )
            max_pixels = gr.Number(
                value=DEFAULTS.max_pixels, precision=0, minimum=SMALLEST_VISUAL_TOKEN_PX,
                label="Max pixels / frame", elem_id="chat-max-pixels",
            )  # fmt: skip
    return [max_new_tokens, temperature, top_p, greedy, fps, max_frames, max_pixels]


def build_layout(h: ChatHandlers) -> ChatWidgets:
    """The tab's widgets: the question and its settings on the left, both answer panes on the right."""
    import gradio as gr

    sample = gr.State(None)
    offered_choices, state = h.shown()
    offered = gr.State(state)
    gr.Markdown(INTRO)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=340):
            model_a, model_b, note, refresh = _model_pickers(offered_choices.items, state["defaults"])
            video = gr.Video(label="Video", sources=["upload"], height=220, elem_id="chat-video")
            image = gr.Image(label="Image", type="filepath", visible=False, height=220, elem_id="chat-image")
            sample_dataset, sample_index, load_sample, sample_info = _sample_accordion(h.dataset_names())
            question = gr.Textbox(
                label="Question",
                lines=5,
                placeholder="Which way does the square move?\n(A) left\n(B) right\n(C) up\n(D) down",
                elem_id="chat-question",
            )
            mode = gr.Radio(
                [THINK, NO_THINK], value=THINK, label="Answer format", elem_id="chat-mode",
                info="think: <think> then <answer>; no_think: <answer> only (as the dataset was trained).",
            )  # fmt: skip
            with gr.Row():
                ask = gr.Button("Ask both models", variant="primary", elem_id="chat-ask", scale=3)
                clear = gr.Button("Clear", elem_id="chat-clear", scale=1)
            settings = _settings_accordion()
        with gr.Column(scale=3, min_width=420):
            with gr.Row(equal_height=True):
                pane_a = gr.Chatbot(label="Model A", height=520, elem_id="chat-answer-a", buttons=["copy"])
                pane_b = gr.Chatbot(label="Model B", height=520, elem_id="chat-answer-b", buttons=["copy"])
            status = gr.Markdown(elem_id="chat-status")
    return ChatWidgets(
        sample=sample, offered=offered, model_a=model_a, model_b=model_b, model_note=note,
        refresh=refresh, video=video, image=image,
        sample_dataset=sample_dataset, sample_index=sample_index, load_sample=load_sample,
        sample_info=sample_info, question=question, mode=mode, ask=ask, clear=clear, settings=settings,
        pane_a=pane_a, pane_b=pane_b, status=status,
    )  # fmt: skip


def _wire_events(w: ChatWidgets, h: ChatHandlers) -> None:
    import gradio as gr

    w.refresh.click(h.on_refresh, [w.model_a, w.model_b, w.offered], [w.model_a, w.model_b, w.offered])
    # .change also fires when a refresh replaces a pick, so the note follows both.
    for picker in (w.model_a, w.model_b):
        picker.change(model_note, [w.model_a, w.model_b], w.model_note, show_progress="hidden")
    w.load_sample.click(
        h.on_load_sample,
        [w.sample_dataset, w.sample_index],
        [w.video, w.image, w.question, w.mode, w.sample, w.sample_info],
    )
    # Datasets registered after the studio started must be pickable without restarting it.
    w.sample_dataset.focus(lambda: gr.Dropdown(choices=h.dataset_names()), None, w.sample_dataset)
    w.video.upload(lambda: (gr.Image(value=None, visible=False), None), None, [w.image, w.sample])
    ask_inputs = [w.model_a, w.model_b, w.video, w.image, w.question, w.mode, w.sample, w.pane_a, w.pane_b]
    ask_event = dict(fn=h.on_ask, inputs=[*ask_inputs, *w.settings], outputs=[w.pane_a, w.pane_b, w.status])
    w.ask.click(**ask_event)
    w.question.submit(**ask_event)
    w.clear.click(lambda: ([], [], ""), None, [w.pane_a, w.pane_b, w.status])


def create_chat_tab(ctx: StudioContext, cache: ModelCache | None = None) -> dict[str, Any]:
    """Build the Chat tab's widgets in the current gr.Tab; returns the key widgets by name."""
    h = ChatHandlers(ctx, cache or ModelCache(capacity=CACHE_SIZE))
    w = build_layout(h)
    _wire_events(w, h)
    return {
        "model_a": w.model_a,
        "model_b": w.model_b,
        "model_note": w.model_note,
        "video": w.video,
        "question": w.question,
        "ask": w.ask,
        "pane_a": w.pane_a,
        "pane_b": w.pane_b,
        "status": w.status,
        "cache": h.cache,
        "refresh": Refresh(
            h.on_show,
            [w.model_a, w.model_b, w.sample_dataset, w.offered],
            [w.model_a, w.model_b, w.sample_dataset, w.offered],
        ),
    }


def settings_from(
    max_new_tokens: float,
    temperature: float,
    top_p: float,
    greedy: bool,
    fps: float,
    max_frames: float,
    max_pixels: float,
) -> ChatSettings:
    """Widget values -> ChatSettings (validated by VideoConfig and generation_kwargs when used)."""
    return ChatSettings(
        max_new_tokens=int(max_new_tokens),
        temperature=float(temperature),
        top_p=float(top_p),
        greedy=bool(greedy),
        fps=float(fps),
        max_frames=int(max_frames),
        max_pixels=int(max_pixels),
    )


def _status_line(states: list) -> str:
    words = {"waiting": "waiting", "loading": "loading model", "generating": "answering", "done": "done"}
    parts = []
    for label, state in zip(("A", "B"), states, strict=False):
        word = "error" if state.error else words.get(state.status, state.status)
        timing = f" in {state.seconds:.1f} s" if state.status == "done" else ""
        parts.append(f"**{label}:** {word}{timing}")
    return " · ".join(parts)
