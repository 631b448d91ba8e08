"""Chat tab: ask two models the same question about a video and watch both answers stream side by side.

A model is a run's checkpoint ("run name · step N"), a run's base model, the embedded tiny model
or any local folder typed into the dropdown. The question can be typed, or filled from a dataset
record (video, question and options, and the prompt format), in which case each answer is also
marked right or wrong. Loading, prompting and streaming live in :mod:`studio.chat_engine`; this
module only wires widgets to it. Every failure becomes a message in the pane that hit it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
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
from trainer.core.errors import StudioError
from trainer.data import MCQRecord
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


def user_message(question: str, media: str | None) -> dict[str, Any]:
    name = f"*video* `{Path(media).name}`\n\n" if media else ""
    return {"role": "user", "content": f"{name}{question.strip()}"}


@dataclass(frozen=True)
class ChatWidgets:
    """The widgets the tab's events read or write."""

    # gr.State {"question": text as loaded, "answer": letter}: answers are judged while the text is unchanged.
    sample: Any
    model_a: Any
    model_b: Any
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

    def models(self) -> choices.Choices:
        try:
            return choices.read_model_choices(self.ctx.store)
        except StudioError as exc:  # an unreadable run DB still leaves the tiny model and typed paths
            logger.warning("chat: cannot list runs: %s", exc)
            return choices.model_choices([])

    def dataset_names(self) -> list[str]:
        return choices.dataset_names(choices.read_datasets(self.ctx.workspace))

    def on_refresh(self, a: str | None, b: str | None) -> tuple[Any, Any]:
        """Both model lists as the run DB and the disk are now; a pick that is gone is replaced
        (A by the tiny model, B by the last choice), a typed folder or hub id is kept."""
        import gradio as gr

        offered = self.models()
        last = offered.values[-1]
        return (
            gr.Dropdown(choices=offered.items, value=offered.keep(a), allow_custom_value=True),
            gr.Dropdown(choices=offered.items, value=offered.keep(b, default=last), allow_custom_value=True),
        )

    def on_show(self, a: str | None, b: str | None, dataset: str | None) -> tuple[Any, Any, Any]:
        import gradio as gr

        names = self.dataset_names()
        value = dataset if dataset in names else _default_dataset(names)
        return (*self.on_refresh(a, b), gr.Dropdown(choices=names, value=value))

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
        info = f"Record **{record.id}** ({int(index or 0)} of 0..{total - 1}) · answer **({record.answer})**"
        return (
            gr.Video(value=None if is_image else media, visible=not is_image),
            gr.Image(value=media if is_image else None, visible=is_image),
            text_,
            record.mode,
            {"question": text_, "answer": record.answer},
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
        correct = (
            loaded_sample["answer"] if loaded_sample and loaded_sample["question"] == question_text else None
        )
        asked = user_message(question_text, media)
        states: list = []
        try:
            for states in stream_answers(self.cache, [path_a or "", path_b or ""], messages, settings):
                panes = []
                for state, history in zip(states, (history_a, history_b), strict=True):
                    footer = None
                    if state.status == "done":
                        footer = (
                            f"{verdict(state.text, options, answer_mode, correct)} · {state.seconds:.1f} s"
                        )
                    panes.append([*history, asked, *answer_messages(state, footer)])
                yield panes[0], panes[1], _status_line(states)
        except Exception as exc:  # a process edge: whatever breaks, the app keeps running
            logger.exception("chat: answering failed")
            yield history_a, history_b, problems.error_markdown(exc, "Error")


def _model_pickers(initial: list[tuple[str, str]]) -> tuple[Any, Any, Any]:
    """Model A (the tiny model first), Model B (the newest choice) and the list's refresh button."""
    import gradio as gr

    with gr.Row():
        model_a = gr.Dropdown(
            initial, value=initial[0][1], label="Model A", info=MODEL_INFO,
            allow_custom_value=True, elem_id="chat-model-a", scale=4,
        )  # fmt: skip
        model_b = gr.Dropdown(
            initial, value=initial[-1][1], label="Model B", info=MODEL_INFO,
            allow_custom_value=True, elem_id="chat-model-b", scale=4,
        )  # fmt: skip
    refresh = gr.Button("↻ Refresh model list", size="sm", elem_id="chat-refresh-models")
    return model_a, model_b, refresh


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
    initial = h.models().items
    gr.Markdown(INTRO)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=340):
            model_a, model_b, refresh = _model_pickers(initial)
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
        sample=sample, model_a=model_a, model_b=model_b, refresh=refresh, video=video, image=image,
        sample_dataset=sample_dataset, sample_index=sample_index, load_sample=load_sample,
        sample_info=sample_info, question=question, mode=mode, ask=ask, clear=clear, settings=settings,
        pane_a=pane_a, pane_b=pane_b, status=status,
    )  # fmt: skip


def _wire_events(w: ChatWidgets, h: ChatHandlers) -> None:
    import gradio as gr

    w.refresh.click(h.on_refresh, [w.model_a, w.model_b], [w.model_a, w.model_b])
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
        "video": w.video,
        "question": w.question,
        "ask": w.ask,
        "pane_a": w.pane_a,
        "pane_b": w.pane_b,
        "status": w.status,
        "cache": h.cache,
        "refresh": Refresh(
            h.on_show, [w.model_a, w.model_b, w.sample_dataset], [w.model_a, w.model_b, w.sample_dataset]
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
