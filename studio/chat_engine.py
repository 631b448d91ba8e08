"""The chat tab's engine: which models can answer, a small cache of loaded ones, and streaming answers.

No gradio here: the tab turns what this module yields into widget updates, and tests drive it
directly. Prompts are built exactly as training builds them (``trainer.data.prompts`` and the video
element of ``trainer.data.video.VideoConfig``), and generation uses ``trainer.model.loading``'s kwargs,
so a checkpoint answers in chat the way it answered during GRPO.

Two answers stream at once: each model generates in its own thread with a streamer that pushes
decoded text into one shared queue, and :func:`stream_answers` yields both texts after every piece.
"""

from __future__ import annotations

import html
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from studio.models import for_token_size
from studio.problems import describe
from trainer.core.errors import ConfigError, DataError, StudioError
from trainer.core.paths import resolve_repo_path
from trainer.core.video_config import DEFAULT_MAX_PIXELS, VideoConfig
from trainer.data.problem_types import MULTIPLE_CHOICE
from trainer.data.prompts import NO_THINK, THINK, chat_messages, format_options, user_text
from trainer.data.records import MCQRecord, split_options
from trainer.model.families import FAMILIES, family_of_model
from trainer.score.rewards import format_reward, read_choice, score_completion, split_completion

logger = logging.getLogger(__name__)

TINY_LABEL = "embedded tiny model"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
# How long a consumer waits for the next piece of text before checking the generating threads.
_POLL_S = 0.5


# ---- which model to load (the lists of models live in studio.choices) --------------------------


def base_model_of(config: Mapping[str, Any] | None) -> str | None:
    """``model_name_or_path`` of a stored run config, sectioned (``{"model": {...}}``) or flat."""
    if not config:
        return None
    section = config.get("model")
    if isinstance(section, Mapping) and section.get("model_name_or_path"):
        return str(section["model_name_or_path"])
    value = config.get("model_name_or_path")
    return str(value) if value else None


def check_model_path(path: str) -> str:
    """The cache key of a model pick: a local folder (relative to the project too) must hold a
    ``config.json`` or, for a LoRA checkpoint, the ``adapter_config.json`` load_policy merges onto
    its base model; a hub id (``owner/name``) is left to transformers. Raises ConfigError naming
    the path."""
    path = (path or "").strip()
    if not path:
        raise ConfigError("no model chosen: pick a checkpoint or type a model path")
    path = resolve_repo_path(path)  # `assets/tiny-qwen2.5-vl` as the presets spell it, from any folder
    local = Path(path).expanduser()
    looks_local = local.is_absolute() or path.startswith((".", "~")) or local.exists()
    if looks_local or path.count("/") > 1:
        if not local.is_dir():
            raise ConfigError(f"model folder not found: {local}")
        if not ((local / "config.json").is_file() or (local / "adapter_config.json").is_file()):
            raise ConfigError(f"not a model folder (no config.json or adapter_config.json): {local}")
        return str(local.resolve())
    return path


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ---- loaded models ---------------------------------------------------------------------------


@dataclass
class LoadedModel:
    path: str
    model: Any
    processor: Any
    device: str
    seconds: float  # time it took to load
    # One generate at a time per model object: two panes asking the same model take turns.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class ModelCache:
    """The last ``capacity`` models used, keyed by path (least recently used is dropped first).

    The chat tab owns one instance; loading a 3B model takes tens of seconds, a cached one nothing.
    """

    def __init__(self, capacity: int = 2, device: str | None = None, dtype: Any = None) -> None:
        if capacity < 1:
            raise ConfigError(f"model cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.device = device
        self.dtype = dtype
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()

    def __contains__(self, path: str) -> bool:
        try:
            return check_model_path(path) in self._models
        except ConfigError:
            return False

    def paths(self) -> list[str]:
        """Cached paths, least recently used first."""
        return list(self._models)

    def get(self, path: str) -> LoadedModel:
        """The loaded model for ``path`` (loading it on a miss). Raises ConfigError when it cannot load."""
        key = check_model_path(path)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        # One load at a time: two panes asking for the same new model load it once, and two big
        # models never sit half-loaded in memory together.
        with self._load_lock:
            with self._lock:
                if key in self._models:
                    self._models.move_to_end(key)
                    return self._models[key]
            loaded = self._load(key)
            with self._lock:
                self._models[key] = loaded
                while len(self._models) > self.capacity:
                    dropped, _ = self._models.popitem(last=False)
                    logger.info("chat: unloaded %s (cache holds %d models)", dropped, self.capacity)
        _free_accelerator_memory()
        return loaded

    def _load(self, key: str) -> LoadedModel:
        from trainer.model.loading import load_policy

        device = self.device or default_device()
        dtype = self.dtype
        if dtype is None and device.startswith("cuda"):
            import torch

            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        start = time.perf_counter()
        try:
            model, processor = load_policy(key, dtype=dtype, device=device)
        except StudioError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ConfigError(f"cannot load model {key}: {_first_line(exc)}") from exc
        model.eval()
        seconds = time.perf_counter() - start
        logger.info("chat: loaded %s on %s in %.1f s", key, device, seconds)
        return LoadedModel(key, model, processor, device, seconds)


def _free_accelerator_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---- prompts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatSettings:
    """Generation and video settings shared by both panes."""

    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9
    greedy: bool = True
    fps: float = 2.0
    max_frames: int = 16
    max_pixels: int = DEFAULT_MAX_PIXELS

    def video_config(self) -> VideoConfig:
        base = VideoConfig()
        return replace(
            base,
            fps=float(self.fps),
            max_frames=int(self.max_frames),
            max_pixels=int(self.max_pixels),
            min_pixels=min(base.min_pixels, int(self.max_pixels)),
        )

    def generation_kwargs(self, processor: Any) -> dict[str, Any]:
        from trainer.model.loading import generation_kwargs

        return generation_kwargs(
            processor,
            int(self.max_new_tokens),
            temperature=float(self.temperature),
            top_p=float(self.top_p),
            do_sample=not self.greedy,
        )


def sample_question(record: MCQRecord) -> str:
    """The text the question box shows for a dataset record: question, then its options. A question
    of another problem type (numerical, OCR, ...) has no options: the box shows the training prompt
    itself (question and the type's answer instruction), which :func:`chat_conversation` sends as typed."""
    if not record.is_multiple_choice:
        return user_text(record.question, {}, record.mode, record.problem_type)
    return f"{record.question.strip()}\nOptions:\n{format_options(record.options)}"


def parse_question(text: str) -> tuple[str, dict[str, str]]:
    """Question box text -> ``(question, options)``; options come from an "(A) ..." block if any."""
    question, pairs, _ = split_options(text or "")
    return question, dict(pairs)


def chat_conversation(media: str | None, question_text: str, mode: str, video_cfg: VideoConfig) -> list[dict]:
    """The chat messages for a question about ``media`` (a video or an image path).

    With options in the text, the user turn is the training prompt (``chat_messages``: question,
    options, answer-format instruction), so a dataset sample asks exactly what
    ``trainer.rollout.hf.conversation`` asks. Without options the question goes in as typed.
    """
    if mode not in (THINK, NO_THINK):
        raise ConfigError(f"prompt mode must be {THINK!r} or {NO_THINK!r}, got {mode!r}")
    question, options = parse_question(question_text)
    if not question and not options:
        raise ConfigError("the question is empty")
    if options:
        messages = chat_messages(question, options, mode)
    else:
        messages = [{"role": "user", "content": [{"type": "text", "text": question}]}]
    if media:
        path = Path(media)
        if not path.is_file():
            raise DataError(f"video not found: {path}")
        is_image = path.suffix.lower() in IMAGE_SUFFIXES
        element = video_cfg.image_element(path) if is_image else video_cfg.video_element(path)
        messages[0]["content"].insert(0, element)
    return messages


# ---- streaming ---------------------------------------------------------------------------------


@dataclass
class AnswerState:
    """One pane's answer as it grows."""

    text: str = ""
    status: str = "waiting"  # waiting | loading | generating | done | error
    error: str | None = None
    seconds: float = 0.0

    @property
    def is_finished(self) -> bool:
        return self.status in ("done", "error")


def _queue_streamer(tokenizer: Any, slot: int, events: queue.Queue) -> Any:
    """A transformers TextStreamer that sends ``(slot, text)`` to a queue instead of printing."""
    from transformers import TextStreamer

    class QueueStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                events.put((slot, "text", text))

    return QueueStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def _describe_error(exc: BaseException) -> str:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        _free_accelerator_memory()
        return "CUDA out of memory: lower max frames / max pixels / max new tokens, or pick a smaller model"
    return describe(exc).headline


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _answer_worker(
    slot: int,
    cache: ModelCache,
    model_path: str,
    messages: list[dict],
    settings: ChatSettings,
    events: queue.Queue,
) -> None:
    """Load (or reuse) a model and generate one answer, reporting through ``events``.

    Runs in its own thread: every failure becomes an ``error`` event, so the app never crashes.
    """
    import torch

    from trainer.data.inputs import build_inputs, opened_block, render_prompts
    from trainer.data.prompts import mode_of_messages

    try:
        events.put((slot, "status", "loading"))
        loaded = cache.get(model_path)
        kwargs = settings.generation_kwargs(loaded.processor)
        # Frames sized by this model's own processor (build_inputs reads its patch size), >= 1 token.
        own = for_token_size(messages, family_of_model(loaded.model).pixels_per_token)
        texts = render_prompts(loaded.processor, [own], [mode_of_messages(own)])
        inputs = build_inputs(loaded.processor, [own], texts=texts)
        inputs = {k: v.to(loaded.device) for k, v in inputs.items()}
        streamer = _queue_streamer(loaded.processor.tokenizer, slot, events)
        # A template that opens the think block itself (Qwen3.5): the answer shown starts with it.
        opening = opened_block(texts[0])
        with loaded.lock, torch.no_grad():
            events.put((slot, "status", "generating"))
            if opening:
                events.put((slot, "text", opening))
            loaded.model.generate(**inputs, **kwargs, streamer=streamer)
        events.put((slot, "status", "done"))
    except BaseException as exc:  # a process edge for this thread: report, never raise
        logger.warning("chat: %s failed: %s", model_path, exc, exc_info=not isinstance(exc, StudioError))
        events.put((slot, "error", _describe_error(exc)))


def _import_generation_modules() -> None:
    """Import what the workers use before they start: transformers' lazy imports are not
    thread-safe (two threads importing AutoProcessor at once fail with ImportError)."""
    import transformers

    for name in ("AutoProcessor", "TextStreamer"):
        getattr(transformers, name)
    for family in FAMILIES.values():
        family.load_class()
    import qwen_vl_utils  # noqa: F401

    import trainer.data.inputs  # noqa: F401
    import trainer.model.loading  # noqa: F401


def stream_answers(
    cache: ModelCache,
    model_paths: Sequence[str],
    messages: list[dict],
    settings: ChatSettings,
    timeout_s: float | None = None,
) -> Iterator[list[AnswerState]]:
    """Ask every model in ``model_paths`` the same question at once; yield all answers after each
    change (new text, a status change, an error). The last item has every answer finished.

    Different models generate in parallel threads; the same model twice answers in turn.
    """
    _import_generation_modules()
    events: queue.Queue = queue.Queue()
    states = [AnswerState() for _ in model_paths]
    starts = [time.perf_counter()] * len(model_paths)
    threads = [
        threading.Thread(
            target=_answer_worker,
            args=(slot, cache, path, messages, settings, events),
            name=f"chat-answer-{slot}",
            daemon=True,
        )
        for slot, path in enumerate(model_paths)
    ]
    for thread in threads:
        thread.start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    yield [replace(s) for s in states]
    while not all(s.is_finished for s in states):
        try:
            slot, kind, payload = events.get(timeout=_POLL_S)
        except queue.Empty:
            if deadline is not None and time.monotonic() > deadline:
                for s in states:
                    if not s.is_finished:
                        s.status, s.error = "error", f"no answer within {timeout_s:.0f} s"
                yield [replace(s) for s in states]
                return
            continue
        state = states[slot]
        if kind == "text":
            state.text += payload
        elif kind == "status":
            state.status = payload
            if payload == "generating":
                starts[slot] = time.perf_counter()
        else:
            state.status, state.error = "error", payload
        if state.is_finished:
            state.seconds = time.perf_counter() - starts[slot]
        yield [replace(s) for s in states]
    for thread in threads:
        thread.join(timeout=_POLL_S)


# ---- rendering ---------------------------------------------------------------------------------


def verdict(
    text: str,
    options: Mapping[str, str],
    mode: str,
    correct: str | None,
    problem_type: str = MULTIPLE_CHOICE,
) -> str:
    """One line under a finished answer: format ok?, the chosen option (or why none), right or wrong.

    The choice is the accuracy reward's (``trainer.score.rewards.read_choice``), so the chat calls
    an answer correct exactly when training would have paid it. For a sample of another problem
    type (``correct`` is then its reference answer) the line gives the accuracy reward training would
    have paid (``trainer.score.rewards.score_completion``).
    """
    parts = ["format ✓" if format_reward(text, mode) else "format ✗"]
    if problem_type != MULTIPLE_CHOICE and correct:
        score = score_completion(text, correct, {}, mode=mode, problem_type=problem_type)
        said = "no closed <answer>" if score.answer is None else f"answered {score.answer[:60]!r}"
        parts += [said, f"{problem_type} reward {score.accuracy_reward:.2f} (reference {correct[:60]!r})"]
        return " · ".join(parts)
    if options:
        choice = read_choice(text, options)
        parts.append(f"chose {choice.letter}" if choice.letter else f"no option chosen ({choice.why_none})")
        if correct:
            parts.append("correct ✓" if choice.letter == correct else f"wrong ✗ (answer {correct})")
    return " · ".join(parts)


def answer_messages(state: AnswerState, footer: str | None = None) -> list[dict[str, Any]]:
    """Chatbot messages (gradio's ``{"role", "content", "metadata"}`` dicts) for one answer: the
    think as a collapsible grey "thought", the answer in bold, stray text as is, errors marked."""
    if state.error:
        return [{"role": "assistant", "content": f"**Error:** {html.escape(state.error)}"}]
    if state.status in ("waiting", "loading") and not state.text:
        return [{"role": "assistant", "content": "_loading model…_" if state.status == "loading" else "…"}]
    parts = split_completion(state.text)
    messages: list[dict[str, Any]] = []
    if parts.think is not None:
        metadata: dict[str, Any] = {"title": "think"}
        # A spinner while the think block is still open; afterwards no status, so the block
        # stays open (gradio closes a "done" thought, hiding the reasoning people came to read).
        if not parts.is_think_closed and not state.is_finished:
            metadata["status"] = "pending"
        if state.is_finished:
            metadata["duration"] = round(state.seconds, 2)
        messages.append(
            {"role": "assistant", "content": html.escape(parts.think) or "…", "metadata": metadata}
        )
    body: list[str] = []
    if parts.answer is not None:
        body.append(f"**{html.escape(parts.answer)}**" if parts.answer else "…")
    if parts.other:
        body.append(html.escape(parts.other))
    if footer and state.is_finished:
        body.append(f"<sub>{html.escape(footer)}</sub>")
    if body:
        messages.append({"role": "assistant", "content": "\n\n".join(body)})
    if not messages:
        messages.append({"role": "assistant", "content": "…"})
    return messages
