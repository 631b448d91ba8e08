"""What vLLM is given for a Qwen-VL prompt (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5): ids and frames.

What vLLM sees is what the training forward sees: the prompt's token ids as our processor made them
(each run of ``<|video_pad|>`` collapsed to one, which vLLM expands again from the same grid), and
the video as our decoder produced it, recovered from the prompt batch's ``pixel_values_videos`` by
undoing the processor's patch layout (:func:`frames_from_patches`). The frames are already rescaled
and normalised, so vLLM's processor is told to only patchify them (:data:`PATCHIFY_ONLY`): the vision
tower gets the same pixels to the bit, and ``second_per_grid_ts`` comes back from the fps in the
metadata.

Qwen3-VL's processor (Qwen3.5's too) also writes a ``<t seconds>`` timestamp before each frame
pair: the whole timestamped video collapses to one ``<|video_pad|>``
(:func:`collapse_timestamped_video`), and the metadata vLLM gets makes its processor write the same
timestamps again (:func:`timestamp_metadata`), so vLLM's prompt tokens are the processor's,
timestamps included (tests/vllm/test_vllm_qwen3_vl.py, test_vllm_qwen3_5.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import torch

# Frames handed to vLLM are already resized, rescaled and normalised (see the module docstring).
PATCHIFY_ONLY = {
    "do_resize": False,
    "do_rescale": False,
    "do_normalize": False,
    "cap_pixels_per_frame": False,  # transformers 5.19-5.21 warn on every call without it
}


def frames_from_patches(
    pixels: torch.Tensor, grid_thw: torch.Tensor, patch_size: int, merge_size: int, temporal_patch_size: int
) -> list[torch.Tensor]:
    """Undo the Qwen-VL processors' patchify: flat patches (sum_i t*h*w, C*tp*p*p) -> one (t*tp, C, h*p, w*p)
    tensor of (normalised) frames per row of ``grid_thw`` (num_videos, 3).

    The processor views frames as (t, tp, C, h/m, m, p, w/m, m, p) and permutes them to
    (t, h/m, w/m, m, m, C, tp, p, p) before flattening; this applies the inverse permutation.
    """
    out = []
    start = 0
    for t, h, w in torch.as_tensor(grid_thw).tolist():
        n = t * h * w
        p, m, tp = patch_size, merge_size, temporal_patch_size
        chunk = pixels[start : start + n].view(t, h // m, w // m, m, m, -1, tp, p, p)
        chunk = chunk.permute(0, 6, 5, 1, 3, 7, 2, 4, 8)
        out.append(chunk.reshape(t * tp, chunk.shape[2], h * p, w * p))
        start += n
    if start != pixels.shape[0]:
        raise ValueError(f"grids cover {start} patches but the batch has {pixels.shape[0]}")
    return out


def collapse_runs(ids: list[int], placeholders: tuple[int, ...]) -> list[int]:
    """Each run of a placeholder token -> one token: vLLM expands a video's single
    ``<|video_pad|>`` itself (to the same count, from the same grid) and would not recognise
    an already expanded run.

    >>> collapse_runs([1, 7, 7, 7, 2, 7, 3], (7,))
    [1, 7, 2, 7, 3]
    """
    return [t for i, t in enumerate(ids) if not (t in placeholders and i > 0 and ids[i - 1] == t)]


def _videos(processor: Any, inputs: dict[str, Any]) -> Iterator[tuple[torch.Tensor, Any]]:
    """(frames (T, C, H, W), second_per_grid_ts or None) of each video of a prompt batch, in order."""
    if "pixel_values_videos" not in inputs:
        return iter(())
    vp = processor.video_processor
    frames = frames_from_patches(
        inputs["pixel_values_videos"], inputs["video_grid_thw"], vp.patch_size, vp.merge_size,
        vp.temporal_patch_size,
    )  # fmt: skip
    seconds = inputs.get("second_per_grid_ts")
    return iter(zip(frames, seconds if seconds is not None else [None] * len(frames), strict=True))


def _images(processor: Any, inputs: dict[str, Any]) -> Iterator[Any]:
    """Each image of a prompt batch as an (H, W, C) array of normalised pixels, in order."""
    if "pixel_values" not in inputs:
        return iter(())
    ip = processor.image_processor
    return iter(
        f[0].permute(1, 2, 0).numpy()  # both temporal copies are the same image: HWC
        for f in frames_from_patches(
            inputs["pixel_values"], inputs["image_grid_thw"], ip.patch_size, ip.merge_size,
            ip.temporal_patch_size,
        )
    )  # fmt: skip


def _rows(inputs: dict[str, Any]) -> Iterator[list[int]]:
    """Each prompt's token ids without its (left) padding."""
    for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"], strict=True):
        yield ids[mask.bool()].tolist()


def qwen_vllm_prompts(family: Any, processor: Any, inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """One vLLM TokensPrompt per question of a prompt batch: its unpadded token ids and its frames
    (or image), recovered from the processor's patches (see the module docstring)."""
    vp = processor.video_processor
    videos, images = _videos(processor, inputs), _images(processor, inputs)
    tok = processor.tokenizer
    video_id = tok.convert_tokens_to_ids(family.video_token)
    image_id = tok.convert_tokens_to_ids(family.image_token)
    prompts = []
    for ids in _rows(inputs):
        ids = collapse_runs(ids, (video_id, image_id))
        item: dict[str, Any] = {"prompt_token_ids": ids, "mm_processor_kwargs": dict(PATCHIFY_ONLY)}
        if video_id in ids:
            frames, second = next(videos)
            # qwen's second_per_grid_ts = temporal_patch_size / fps: give back that fps.
            fps = vp.temporal_patch_size / float(second) if second is not None else 2.0
            meta = {
                "fps": fps,
                "duration": frames.shape[0] / fps,
                "total_num_frames": frames.shape[0],
                "frames_indices": list(range(frames.shape[0])),
                "video_backend": "torchvision",
                "do_sample_frames": False,
            }
            item["multi_modal_data"] = {"video": (frames, meta)}
        elif image_id in ids:
            item["multi_modal_data"] = {"image": next(images)}
        prompts.append(item)
    return prompts


# ---- Qwen3-VL: a video's frames carry timestamps in the text ------------------------------------

# The timestamp the processor writes before a frame (at the end of the text before that frame).
TIMESTAMP = re.compile(r"<(\d+\.\d) seconds>$")
# The fps the metadata handed to vLLM states: frame index i then sits at i / 10 s, so every
# timestamp the processor prints (0.1 s steps) is some index's (see :func:`timestamp_metadata`).
TIMESTAMP_FPS = 10.0


def timestamp_metadata(seconds: list[float], temporal_patch_size: int) -> dict[str, Any]:
    """Video metadata from which vLLM's Qwen3-VL processor prints ``seconds`` again: each temporal
    patch's frames get the index of its timestamp at :data:`TIMESTAMP_FPS` (the processor prints
    the mean time of a patch's frames, to 0.1 s).

    >>> timestamp_metadata([0.1, 0.6], 2)["frames_indices"]
    [1, 1, 6, 6]
    """
    indices = [round(s * TIMESTAMP_FPS) for s in seconds for _ in range(temporal_patch_size)]
    total = max(indices) + 1
    return {
        "fps": TIMESTAMP_FPS,
        "duration": total / TIMESTAMP_FPS,
        "total_num_frames": total,
        "frames_indices": indices,
        "video_backend": "torchvision",
        "do_sample_frames": False,
    }


def _runs(ids: list[int], token: int) -> list[tuple[int, int]]:
    """(start, end) of each run of ``token`` in ``ids``, end exclusive.

    >>> _runs([5, 7, 7, 5, 7], 7)
    [(1, 3), (4, 5)]
    """
    starts = [i for i, t in enumerate(ids) if t == token and (i == 0 or ids[i - 1] != token)]
    return [(s, next((j for j in range(s, len(ids)) if ids[j] != token), len(ids))) for s in starts]


def collapse_timestamped_video(
    ids: list[int], tok: Any, video_id: int, start_id: int, end_id: int
) -> tuple[list[int], list[float]]:
    """A Qwen3-VL prompt's expanded video, ``<t0 seconds><|vision_start|><|video_pad|>...
    <|vision_end|><t1 seconds>...``, collapsed to the one ``<|video_pad|>`` vLLM expands again, and
    the frames' timestamps (s) read from the text.

    vLLM tokenises each timestamp on its own; a prompt whose timestamps were tokenised otherwise
    (merged with the text before the video) would reach vLLM as different tokens, so it is refused.
    """
    runs = _runs(ids, video_id)
    seconds: list[float] = []
    span_start = 0
    for k, (s, e) in enumerate(runs):
        if ids[s - 1] != start_id or e >= len(ids) or ids[e] != end_id:
            raise ValueError(f"video frame {k} of the prompt is not <|vision_start|>...<|vision_end|>")
        before = tok.decode(ids[runs[k - 1][1] + 1 if k else 0 : s - 1])
        found = TIMESTAMP.search(before)
        if found is None or (k and found.start() != 0):
            raise ValueError(f"no timestamp before video frame {k} of the prompt: {before[-40:]!r}")
        expected = tok.encode(found.group(0), add_special_tokens=False)
        if ids[s - 1 - len(expected) : s - 1] != expected:
            raise ValueError(
                f"timestamp {found.group(0)} of video frame {k} is tokenised with the text before it; "
                "vLLM tokenises it on its own and would see a different prompt"
            )
        seconds.append(float(found.group(1)))
        span_start = span_start if k else s - 1 - len(expected)
    return ids[:span_start] + [video_id] + ids[runs[-1][1] + 1 :], seconds


def qwen3_vllm_prompts(family: Any, processor: Any, inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """As :func:`qwen_vllm_prompts` for Qwen3-VL: each video collapsed with its timestamps
    (:func:`collapse_timestamped_video`), and metadata from which vLLM prints the same ones."""
    vp = processor.video_processor
    videos, images = _videos(processor, inputs), _images(processor, inputs)
    tok = processor.tokenizer
    video_id, image_id, start_id, end_id = tok.convert_tokens_to_ids(
        [family.video_token, family.image_token, "<|vision_start|>", "<|vision_end|>"]
    )
    prompts = []
    for ids in _rows(inputs):
        item: dict[str, Any] = {"mm_processor_kwargs": dict(PATCHIFY_ONLY)}
        if video_id in ids:
            frames, _ = next(videos)
            ids, seconds = collapse_timestamped_video(ids, tok, video_id, start_id, end_id)
            if len(seconds) * vp.temporal_patch_size != frames.shape[0]:
                raise ValueError(f"{len(seconds)} timestamps in the prompt for {frames.shape[0]} frames")
            meta = timestamp_metadata(seconds, vp.temporal_patch_size)
            item["multi_modal_data"] = {"video": (frames, meta)}
        elif image_id in ids:
            ids = collapse_runs(ids, (image_id,))
            item["multi_modal_data"] = {"image": next(images)}
        item["prompt_token_ids"] = ids
        prompts.append(item)
    return prompts
