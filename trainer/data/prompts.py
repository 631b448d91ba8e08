"""How a question record becomes the user turn the model sees, and what a well-formed answer looks like.

One place for the prompt text, so the format warm start, GRPO training, evaluation and the studio's
chat all ask the same question the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from trainer.data.problem_types import ANSWER_REQUESTS, MULTIPLE_CHOICE

THINK = "think"
NO_THINK = "no_think"


def instruction(mode: str = THINK, problem_type: str = MULTIPLE_CHOICE) -> str:
    """The answer-format sentence that ends the user turn: the think/no_think frame around what the
    problem type puts inside ``<answer>`` (Video-R1's TYPE_TEMPLATE asks the same per type).

    The multiple-choice sentences are the ones the tiny models were warm-started on; keep them."""
    request, example = ANSWER_REQUESTS[problem_type]
    if mode == NO_THINK:
        return f"Give {request} inside <answer> </answer> tags, e.g. <answer>{example}</answer>."
    return (
        f"Think about the question inside <think> </think> tags, then give {request} "
        f"inside <answer> </answer> tags, e.g. <answer>{example}</answer>."
    )


THINK_INSTRUCTION = instruction(THINK)
NO_THINK_INSTRUCTION = instruction(NO_THINK)
_NO_THINK_INSTRUCTIONS = tuple(instruction(NO_THINK, kind) for kind in ANSWER_REQUESTS)


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
            return NO_THINK if text.rstrip().endswith(_NO_THINK_INSTRUCTIONS) else THINK
    return THINK


def format_options(options: Mapping[str, str]) -> str:
    """``{"A": "left", "B": "right"}`` -> ``"(A) left\\n(B) right"``."""
    return "\n".join(f"({letter}) {text}" for letter, text in options.items())


def user_text(
    question: str, options: Mapping[str, str], mode: str = THINK, problem_type: str = MULTIPLE_CHOICE
) -> str:
    """The text part of the user turn (the video comes before it in the chat messages); only
    multiple choice lists options."""
    if problem_type != MULTIPLE_CHOICE:
        return f"{question.strip()}\n{instruction(mode, problem_type)}"
    return f"{question.strip()}\nOptions:\n{format_options(options)}\n{instruction(mode)}"


def answer_text(letter: str, options: Mapping[str, str], think: str | None = None) -> str:
    """A well-formed completion: ``<think>…</think> <answer>(B) right</answer>`` (no think block
    when ``think`` is None, as the no_think mode expects)."""
    answer = f"<answer>({letter}) {options[letter]}</answer>"
    return answer if think is None else f"<think>{think}</think> {answer}"


def reference_completion(
    problem_type: str, answer: str, options: Mapping[str, str], think: str | None = None
) -> str:
    """The well-formed completion a record's reference answer makes: :func:`answer_text` for
    multiple choice, ``<answer>4</answer>`` (with the think block when given) for the other types."""
    if problem_type == MULTIPLE_CHOICE:
        return answer_text(answer, options, think)
    tagged = f"<answer>{answer}</answer>"
    return tagged if think is None else f"<think>{think}</think> {tagged}"


def chat_messages(
    question: str,
    options: Mapping[str, str],
    mode: str = THINK,
    video: str | None = None,
    image: str | None = None,
    vision_kwargs: Mapping[str, object] | None = None,
    problem_type: str = MULTIPLE_CHOICE,
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
    content.append({"type": "text", "text": user_text(question, options, mode, problem_type)})
    return [{"role": "user", "content": content}]
