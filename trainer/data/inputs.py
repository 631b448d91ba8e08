"""Chat messages (with videos/images) -> the tensors a Qwen VL model's forward and generate take."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from trainer.data.prompts import NO_THINK
from trainer.data.video import DecodeCache, fetch_vision, vision_patch_size

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def render_prompts(
    processor: Any,
    conversations: Sequence[list[dict]],
    modes: Sequence[str] | None = None,
    add_generation_prompt: bool = True,
) -> list[str]:
    """The chat template's text of each conversation. ``modes`` (think / no_think per conversation)
    reach the template as ``enable_thinking``: a template that thinks by default (Qwen3.5) opens a
    think block in the generation prompt unless told not to; templates without the switch ignore it."""
    # Only a template that reads the switch gets it: transformers hands unknown kwargs to the
    # processor, with a warning per call.
    switch = modes is not None and "enable_thinking" in str(getattr(processor, "chat_template", "") or "")
    return [
        processor.apply_chat_template(
            conv,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            **({"enable_thinking": modes[i] != NO_THINK} if switch else {}),
        )
        for i, conv in enumerate(conversations)
    ]


def opened_block(prompt_text: str) -> str:
    r"""What the template already wrote of the answer and the model continues: the open think block
    (``"<think>\n"``) a thinking-by-default template ends its generation prompt with, else "".

    The completion the model writes then starts inside the block (``"it moves right</think>..."``);
    prefixing this makes the text the rewards, eval and chat read the whole answer.

    >>> opened_block("<|im_start|>assistant\n<think>\n")
    '<think>\n'
    >>> opened_block("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    ''
    """
    start = prompt_text.rfind(THINK_OPEN)
    if start < 0 or THINK_CLOSE in prompt_text[start:]:
        return ""
    return prompt_text[start:]


def continuation(answer: str, opening: str) -> str:
    r"""The part of a whole ``answer`` the model writes after a prompt that ``opening`` ended
    (:func:`opened_block`): a supervised target or a reference answer for such a prompt.

    >>> continuation("<think>x</think> <answer>(A) up</answer>", "<think>\n")
    'x</think> <answer>(A) up</answer>'
    >>> continuation("<answer>(A) up</answer>", "")
    '<answer>(A) up</answer>'
    """
    head = opening.strip()
    return answer[len(head) :].lstrip() if head and answer.startswith(head) else answer


def build_inputs(
    processor: Any,
    conversations: Sequence[list[dict]],
    completions: Sequence[str] | None = None,
    add_generation_prompt: bool = True,
    video_transform: Callable[[Any], Any] | None = None,
    cache: DecodeCache | None = None,
    modes: Sequence[str] | None = None,
    texts: Sequence[str] | None = None,
) -> Any:
    """Tokenise a batch of conversations and decode their videos once.

    Each conversation is a list of chat messages (see ``trainer.data.prompts.chat_messages``).
    Prompts are LEFT-padded to one length P, so generation starts right after every prompt and
    completion token t of every row sits at position P + t. Returns the processor's BatchFeature
    with ``input_ids``/``attention_mask``/``mm_token_type_ids`` (B, P), ``pixel_values_videos``,
    ``video_grid_thw`` (num_videos, 3), ``second_per_grid_ts`` (and the image equivalents).

    With ``completions``, each completion plus ``<|im_end|>`` is tokenised on its own (as the
    model generated it) and appended after the prompt, right-padded to length T; the batch then
    has length P + T, ``completion_mask`` (B, T) marks the completion tokens and
    ``prompt_lengths`` (B,) is P for every row (where the completions start).
    ``video_transform`` maps each decoded video (T, C, H, W) before it is patchified (T-GRPO
    shuffles frames with it). ``cache`` keeps decoded videos between calls. ``modes``: each
    conversation's think / no_think mode, for templates that switch thinking (:func:`render_prompts`);
    ``texts``: the conversations already rendered with them (not rendered again).
    """
    import torch

    if texts is None:  # a caller that also reads the rendered prompts passes them in
        texts = render_prompts(processor, conversations, modes, add_generation_prompt)
    texts = list(texts)
    flat: list[dict] = [m for conv in conversations for m in conv]
    images, videos, video_kwargs = fetch_vision(flat, cache, vision_patch_size(processor))
    if videos and video_transform is not None:
        videos = [(video_transform(v), m) for v, m in videos]
    kwargs: dict[str, Any] = dict(
        text=texts, images=images, padding=True, padding_side="left", return_tensors="pt"
    )
    if videos:
        kwargs["videos"] = [v for v, _ in videos]
        kwargs["video_metadata"] = [m for _, m in videos]
        # qwen-vl-utils already resized the frames; resizing again would change the token count.
        kwargs["do_resize"] = False
        # Only matters when the processor resizes (it does not here); set to silence its
        # "per-frame pixel cap" notice on every call.
        kwargs["cap_pixels_per_frame"] = False
        kwargs.update(video_kwargs)
    batch = processor(**kwargs)
    if completions is None:
        return batch
    if len(completions) != len(texts):
        raise ValueError(f"{len(completions)} completions for {len(texts)} conversations")
    tok = processor.tokenizer
    end = tok.eos_token or "<|im_end|>"
    enc = tok(
        [c + end for c in completions],
        add_special_tokens=False,
        padding=True,
        padding_side="right",
        return_tensors="pt",
    )
    prompt_len = batch["input_ids"].shape[1]
    batch["input_ids"] = torch.cat([batch["input_ids"], enc["input_ids"]], dim=1)
    batch["attention_mask"] = torch.cat([batch["attention_mask"], enc["attention_mask"]], dim=1)
    if "mm_token_type_ids" in batch:
        batch["mm_token_type_ids"] = torch.cat(
            [batch["mm_token_type_ids"], torch.zeros_like(enc["input_ids"])], dim=1
        )
    batch["completion_mask"] = enc["attention_mask"]
    batch["prompt_lengths"] = torch.full((len(texts),), prompt_len, dtype=torch.long)
    return batch
