"""Per-record readers: one raw record of any supported format -> a :class:`Draft` question.

Each record is recognised by its own keys, so a file may mix formats:

- ``conversations`` (from/value turns): the project's seed format and the qwen-vl-finetune /
  LLaVA-Video / LLaMA-Factory sharegpt variants (``video``/``videos``/``image``/``images``); the
  human turn carries a ``<video>``/``<image>`` placeholder and the options, the gpt turn the answer.
- ``messages`` (role/content turns): LLaMA-Factory's default format, same rules.
- ``problem`` (+ ``options``, ``solution``, ``problem_type``, ``path``/``video``/``image``): Video-R1,
  every problem type (``trainer.data.problem_types``); only multiple choice has options.
- ``question`` + ``answer`` (options inline in the question, ``videos``/``images``): EasyR1.
- NExT-QA CSV rows (``video``, ``question``, ``answer`` index, ``a0``..``a4``): :func:`nextqa_row`.

A top-level ``problem_type`` key works in the conversation formats too (the synthetic numerical
split uses it): the human turn is then the question alone and the reply's ``<answer>`` the reference.

Readers are pure: they raise ``ValueError(reason)`` and the loader adds file, line and record id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trainer.data.problem_types import MULTIPLE_CHOICE, canonical_type, check_reference
from trainer.data.records import (
    answer_letter,
    answer_span,
    check_options,
    options_from_list,
    split_options,
    strip_placeholders,
)

CONVERSATION = "conversation"
MESSAGES = "messages"
VIDEO_R1 = "video_r1"
EASYR1 = "easyr1"
NEXTQA = "nextqa"

VIDEO = "video"
IMAGE = "image"

_ID_KEYS = ("id", "problem_id", "qid", "question_id")
_HUMAN_ROLES = {"human", "user"}
_ANSWER_ROLES = {"gpt", "assistant"}
# NExT-QA keeps up to five candidate answers in columns a0..a4.
NEXTQA_COLUMNS = ("video", "question", "answer")
NEXTQA_OPTION_COLUMNS = tuple(f"a{i}" for i in range(5))


@dataclass(frozen=True)
class Draft:
    """A record's question before its media path is resolved against a video root."""

    fmt: str
    media_kind: str  # VIDEO or IMAGE
    media_path: str  # as written in the file
    question: str
    options: dict[str, str]
    answer: str
    # True/False when the record carries a reference answer text (with/without <think>); None when
    # the answer is only a letter, so the record says nothing about the expected format.
    has_think: bool | None = None
    problem_type: str = MULTIPLE_CHOICE


def record_id(raw: Any, stem: str, index: int) -> str:
    """``id``/``problem_id``/``qid``/``question_id`` when present, else ``<file stem>:<index>``."""
    if isinstance(raw, Mapping):
        for key in _ID_KEYS:
            value = raw.get(key)
            if value is not None and str(value).strip():
                return str(value).strip()
    return f"{stem}:{index}"


def detect_format(raw: Mapping[str, Any]) -> str:
    if "conversations" in raw:
        return CONVERSATION
    if "messages" in raw:
        return MESSAGES
    if "problem" in raw:
        return VIDEO_R1
    if "question" in raw and "answer" in raw:
        return EASYR1
    keys = ", ".join(sorted(map(str, raw))) or "none"
    raise ValueError(
        f"unrecognised record (keys: {keys}); expected 'conversations', 'messages', "
        "'problem' (Video-R1) or 'question' + 'answer' (EasyR1)"
    )


def parse_record(raw: Any) -> Draft:
    """Normalise one JSON record; ValueError(reason) when it is not a usable MCQ."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
    fmt = detect_format(raw)
    if fmt == CONVERSATION:
        turns = _turns(raw["conversations"], "conversations", role_key="from", text_key="value")
        draft = _from_turns(raw, turns, fmt)
    elif fmt == MESSAGES:
        turns = _turns(raw["messages"], "messages", role_key="role", text_key="content")
        draft = _from_turns(raw, turns, fmt)
    elif fmt == VIDEO_R1:
        draft = _from_video_r1(raw)
    else:
        draft = _from_easyr1(raw)
    if not draft.question:
        raise ValueError("empty question text (only options)")
    return draft


def nextqa_row(row: Mapping[str, str | None]) -> Draft:
    """One NExT-QA CSV row (answer = 0-based index into a0..a4) -> Draft with options A-E."""
    pairs = [
        (chr(ord("A") + i), (row.get(col) or "").strip())
        for i, col in enumerate(NEXTQA_OPTION_COLUMNS)
        if col in row and row.get(col) is not None
    ]
    options = check_options(pairs)
    raw_answer = (row.get("answer") or "").strip()
    try:
        answer_index = int(raw_answer)
    except ValueError:
        raise ValueError(f"answer {raw_answer!r} is not an option index 0-{len(pairs) - 1}") from None
    if not 0 <= answer_index < len(pairs):
        raise ValueError(f"answer index {answer_index} not in 0-{len(pairs) - 1}")
    video = (row.get("video") or "").strip()
    if not video:
        raise ValueError("empty 'video' column")
    question = (row.get("question") or "").strip()
    if not question:
        raise ValueError("empty 'question' column")
    return Draft(
        fmt=NEXTQA,
        media_kind=VIDEO,
        media_path=f"{video}.mp4",
        question=question,
        options=options,
        answer=chr(ord("A") + answer_index),
    )


def nextqa_id(row: Mapping[str, str | None], stem: str, line: int) -> str:
    """NExT-QA's ``qid`` counts questions within one video, so the id is ``<video>_<qid>``."""
    video, qid = (row.get("video") or "").strip(), (row.get("qid") or "").strip()
    return f"{video}_{qid}" if video and qid else f"{stem}:{line}"


def _turns(value: Any, key: str, role_key: str, text_key: str) -> list[tuple[str, str]]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"'{key}' must be a non-empty list of turns")
    turns = []
    for i, turn in enumerate(value):
        if not isinstance(turn, Mapping) or not isinstance(turn.get(text_key), str):
            raise ValueError(f"'{key}' turn {i} has no string '{text_key}'")
        turns.append((str(turn.get(role_key, "")).lower(), turn[text_key]))
    return turns


def _single_media(raw: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """The one path under the first present key of ``keys`` (a string or a one-item list)."""
    for key in keys:
        if key not in raw or raw[key] is None:
            continue
        value = raw[key]
        if isinstance(value, str):
            return value if value.strip() else None
        if isinstance(value, list):
            if not value:
                return None
            if len(value) > 1:
                raise ValueError(f"{len(value)} paths in '{key}'; one per record is supported")
            if not isinstance(value[0], str):
                raise ValueError(f"'{key}' must hold a path string")
            return value[0]
        raise ValueError(f"'{key}' must be a path string or a list of one, got {type(value).__name__}")
    return None


def _media(
    raw: Mapping[str, Any], video_keys: tuple[str, ...], image_keys: tuple[str, ...]
) -> tuple[str, str]:
    video = _single_media(raw, video_keys)
    image = _single_media(raw, image_keys)
    if video and image:
        raise ValueError("has both a video and an image; one per record is supported")
    if video:
        return VIDEO, video
    if image:
        return IMAGE, image
    raise ValueError(f"no video or image (expected one of: {', '.join(video_keys + image_keys)})")


def _from_turns(raw: Mapping[str, Any], turns: list[tuple[str, str]], fmt: str) -> Draft:
    kind, path = _media(raw, ("video", "videos"), ("image", "images"))
    human_at = next((i for i, (role, _) in enumerate(turns) if role in _HUMAN_ROLES), None)
    if human_at is None:
        raise ValueError("no human/user turn")
    human = turns[human_at][1]
    token = f"<{kind}>"
    if token not in human:
        raise ValueError(f"human turn has no {token} placeholder")
    other = "<image>" if kind == VIDEO else "<video>"
    if other in human:
        raise ValueError(f"human turn has an {other} placeholder but the record has no {other[1:-1]}")
    reply = next((text for role, text in turns[human_at + 1 :] if role in _ANSWER_ROLES), None)
    problem_type = canonical_type(raw.get("problem_type"))
    if problem_type != MULTIPLE_CHOICE:
        if reply is None:
            raise ValueError("no gpt/assistant turn with the reference answer")
        return _open_draft(
            fmt, kind, path, strip_placeholders(human), problem_type, reply, "<think>" in reply
        )
    question, pairs, _ = split_options(strip_placeholders(human))
    options = check_options(pairs)
    if reply is None:
        raise ValueError("no gpt/assistant turn with the answer")
    return Draft(
        fmt=fmt,
        media_kind=kind,
        media_path=path,
        question=question,
        options=options,
        answer=answer_letter(reply, options),
        has_think="<think>" in reply,
    )


def _open_draft(
    fmt: str, kind: str, path: str, question: str, problem_type: str, reply: str, has_think: bool | None
) -> Draft:
    """A question of a type other than multiple choice: no options, the reply's (last) ``<answer>``
    block, or the whole reply when untagged, is the reference answer."""
    answer = answer_span(reply)
    check_reference(problem_type, answer, {})
    return Draft(
        fmt=fmt,
        media_kind=kind,
        media_path=path,
        question=question,
        options={},
        answer=answer,
        has_think=has_think,
        problem_type=problem_type,
    )


def _video_r1_media(raw: Mapping[str, Any]) -> tuple[str, str]:
    if str(raw.get("data_type", "")).lower() == IMAGE:
        kind, path = IMAGE, _single_media(raw, ("path", "image", "images"))
    else:
        # `path` is the file under the dataset root; `video` may only be the original id (MVBench).
        kind, path = _media(raw, ("path", "video", "videos"), ("image", "images"))
    if not path:
        raise ValueError(f"no {kind} path ('path')")
    return kind, path


def _from_video_r1(raw: Mapping[str, Any]) -> Draft:
    problem_type = canonical_type(raw.get("problem_type"))
    problem = raw.get("problem")
    if not isinstance(problem, str) or not problem.strip():
        raise ValueError("'problem' must be a non-empty string")
    listed = raw.get("options")
    process = raw.get("process")
    has_think = True if isinstance(process, str) and "<think>" in process else None
    if problem_type != MULTIPLE_CHOICE:
        if listed:
            raise ValueError(f"a {problem_type} question has no options, got {listed!r:.60}")
        solution = raw.get("solution", raw.get("answer"))
        if not isinstance(solution, str):
            raise ValueError("no 'solution' with the reference answer")
        kind, path = _video_r1_media(raw)
        return _open_draft(
            VIDEO_R1, kind, path, strip_placeholders(problem), problem_type, solution, has_think
        )
    if listed:
        if isinstance(listed, Mapping):
            pairs = [(str(k).strip(), str(v)) for k, v in listed.items()]
        elif isinstance(listed, list):
            pairs = options_from_list(listed)
        else:
            raise ValueError(f"'options' must be a list, got {type(listed).__name__}")
        question = strip_placeholders(problem)
    else:
        # Some Video-R1 style files keep the options inside the problem text.
        question, pairs, _ = split_options(strip_placeholders(problem))
    options = check_options(pairs)
    solution = raw.get("solution", raw.get("answer"))
    if not isinstance(solution, str):
        raise ValueError("no 'solution' with the answer")
    kind, path = _video_r1_media(raw)
    return Draft(
        fmt=VIDEO_R1,
        media_kind=kind,
        media_path=path,
        question=question,
        options=options,
        answer=answer_letter(solution, options),
        has_think=has_think,
    )


def _from_easyr1(raw: Mapping[str, Any]) -> Draft:
    text = raw.get("question")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("'question' must be a non-empty string")
    answer = raw.get("answer")
    if not isinstance(answer, str):
        raise ValueError(f"'answer' must be an option letter, got {type(answer).__name__}")
    kind, path = _media(raw, ("videos", "video"), ("images", "image"))
    # The trailing instruction (answer inside <answer> tags) is dropped: prompts.py adds ours.
    question, pairs, _ = split_options(strip_placeholders(text))
    options = check_options(pairs)
    return Draft(
        fmt=EASYR1,
        media_kind=kind,
        media_path=path,
        question=question,
        options=options,
        answer=answer_letter(answer, options),
    )
