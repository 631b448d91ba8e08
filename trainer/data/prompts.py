"""How an MCQ record becomes the user turn the model sees, and what a well-formed answer looks like.

One place for the prompt text, so the format warm start, GRPO training, evaluation and the studio's
chat all ask the same question the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

THINK = "think"
NO_THINK = "no_think"

THINK_INSTRUCTION = (
    "Think about the question inside <think> </think> tags, then give the right option "
    "inside <answer> </answer> tags, e.g. <answer>(A) text</answer>."
)
NO_THINK_INSTRUCTION = "Give the right option inside <answer> </answer> tags, e.g. <answer>(A) text</answer>."


def mode_for_dataset(name: str) -> str:
    """A dataset whose name contains ``no_think`` expects ``<answer>`` only."""
    return NO_THINK if "no_think" in name.lower() else THINK


def mode_of_messages(messages: list[dict]) -> str:
    """The think / no_think mode of chat messages built by :func:`chat_messages` (from the
    instruction the last user turn ends with)."""
    for message in reversed(messages):
        content = message.get("content")
        parts = content if isinstance(content, list) else [{"text": content}]
        text = "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
        if message.get("role") == "user":
            return NO_THINK if text.rstrip().endswith(NO_THINK_INSTRUCTION) else THINK
    return THINK


def format_options(options: Mapping[str, str]) -> str:
    """``{"A": "left", "B": "right"}`` -> ``"(A) left\\n(B) right"``."""
    return "\n".join(f"({letter}) {text}" for letter, text in options.items())


def user_text(question: str, options: Mapping[str, str], mode: str = THINK) -> str:
    """The text part of the user turn (the video comes before it in the chat messages)."""
    instruction = NO_THINK_INSTRUCTION if mode == NO_THINK else THINK_INSTRUCTION
    return f"{question.strip()}\nOptions:\n{format_options(options)}\n{instruction}"


def answer_text(letter: str, options: Mapping[str, str], think: str | None = None) -> str:
    """A well-formed completion: ``<think>…</think> <answer>(B) right</answer>`` (no think block
    when ``think`` is None, as the no_think mode expects)."""
    answer = f"<answer>({letter}) {options[letter]}</answer>"
    return answer if think is None else f"<think>{think}</think> {answer}"


def chat_messages(
    question: str,
    options: Mapping[str, str],
    mode: str = THINK,
    video: str | None = None,
    image: str | None = None,
    vision_kwargs: Mapping[str, object] | None = None,
) -> list[dict]:
    """Qwen VL chat messages for one question, in the form ``process_vision_info`` reads.

    ``vision_kwargs`` are qwen-vl-utils' per-item knobs (fps, min_pixels, max_pixels, total_pixels,
    max_frames) copied into the video/image entry.
    """
    content: list[dict] = []
    if video is not None:
        content.append({"type": "video", "video": video, **(vision_kwargs or {})})
    if image is not None:
        content.append({"type": "image", "image": image, **(vision_kwargs or {})})
    content.append({"type": "text", "text": user_text(question, options, mode)})
    return [{"role": "user", "content": content}]
