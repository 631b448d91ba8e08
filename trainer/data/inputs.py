"""Chat messages (with videos/images) -> the tensors Qwen2.5-VL's forward and generate take."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainer.data.video import fetch_vision


def build_inputs(
    processor: Any,
    conversations: Sequence[list[dict]],
    completions: Sequence[str] | None = None,
    add_generation_prompt: bool = True,
) -> Any:
    """Tokenise a batch of conversations and decode their videos once.

    Each conversation is a list of chat messages (see ``trainer.data.prompts.chat_messages``).
    With ``completions``, each completion is appended after the generation prompt and closed with
    ``<|im_end|>`` (supervised or log-prob passes); the returned batch then also carries
    ``prompt_lengths`` (B,) so callers can mask the prompt. Returns the processor's BatchFeature
    with ``input_ids``/``attention_mask`` (B, L), ``pixel_values_videos``, ``video_grid_thw``
    (num_videos, 3), ``second_per_grid_ts`` and ``mm_token_type_ids`` (B, L), left-padded so
    generation can start right after the prompt.
    """
    import torch

    texts = [
        processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=add_generation_prompt)
        for conv in conversations
    ]
    prompt_texts = list(texts)
    if completions is not None:
        if len(completions) != len(texts):
            raise ValueError(f"{len(completions)} completions for {len(texts)} conversations")
        end = processor.tokenizer.eos_token or "<|im_end|>"
        texts = [t + c + end for t, c in zip(texts, completions)]
    flat: list[dict] = [m for conv in conversations for m in conv]
    images, videos, video_kwargs = fetch_vision(flat) if _has_vision(flat) else (None, None, {})
    kwargs: dict[str, Any] = dict(text=texts, images=images, padding=True, return_tensors="pt")
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
    if completions is not None:
        # Prompt lengths from the same tokenizer call on the prompt alone; vision pads expand the
        # same way in both, so count them from the full ids instead of re-running the processor.
        tok = processor.tokenizer
        lengths = []
        for prompt, ids, mask in zip(prompt_texts, batch["input_ids"], batch["attention_mask"]):
            n_text = len(tok(_strip_vision_pads(prompt, processor), add_special_tokens=False)["input_ids"])
            n_pads = int((ids[mask.bool()] == _video_pad_id(processor)).sum()) + int(
                (ids[mask.bool()] == _image_pad_id(processor)).sum()
            )
            lengths.append(n_text + n_pads)
        batch["prompt_lengths"] = torch.tensor(lengths)
    return batch


def _has_vision(messages: list[dict]) -> bool:
    return any(
        isinstance(el, dict) and (el.get("type") in ("video", "image") or "video" in el or "image" in el)
        for m in messages
        if isinstance(m.get("content"), list)
        for el in m["content"]
    )


def _video_pad_id(processor: Any) -> int:
    return processor.tokenizer.convert_tokens_to_ids(processor.video_token)


def _image_pad_id(processor: Any) -> int:
    return processor.tokenizer.convert_tokens_to_ids(processor.image_token)


def _strip_vision_pads(text: str, processor: Any) -> str:
    return text.replace(processor.video_token, "").replace(processor.image_token, "")
