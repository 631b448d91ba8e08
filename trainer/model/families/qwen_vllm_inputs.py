"""What vLLM is given for a Qwen2-style prompt (Qwen2-VL, Qwen2.5-VL): token ids and frames.

What vLLM sees is what the training forward sees: the prompt's token ids as our processor made them
(each run of ``<|video_pad|>`` collapsed to one, which vLLM expands again from the same grid), and
the video as our decoder produced it, recovered from the prompt batch's ``pixel_values_videos`` by
undoing the processor's patch layout (:func:`frames_from_patches`). The frames are already rescaled
and normalised, so vLLM's processor is told to only patchify them (:data:`PATCHIFY_ONLY`): the vision
tower gets the same pixels to the bit, and ``second_per_grid_ts`` comes back from the fps in the
metadata.
"""

from __future__ import annotations

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


def qwen_vllm_prompts(family: Any, processor: Any, inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """One vLLM TokensPrompt per question of a prompt batch: its unpadded token ids and its frames
    (or image), recovered from the processor's patches (see the module docstring)."""
    vp = processor.video_processor
    ip = processor.image_processor
    videos = iter(())
    if "pixel_values_videos" in inputs:
        frames = frames_from_patches(
            inputs["pixel_values_videos"], inputs["video_grid_thw"], vp.patch_size, vp.merge_size,
            vp.temporal_patch_size,
        )  # fmt: skip
        seconds = inputs.get("second_per_grid_ts")
        videos = iter(zip(frames, seconds if seconds is not None else [None] * len(frames), strict=True))
    images: Iterator[torch.Tensor] = iter(())
    if "pixel_values" in inputs:
        images = iter(
            f[0].permute(1, 2, 0).numpy()  # both temporal copies are the same image: HWC
            for f in frames_from_patches(
                inputs["pixel_values"], inputs["image_grid_thw"], ip.patch_size, ip.merge_size,
                ip.temporal_patch_size,
            )
        )  # fmt: skip
    tok = processor.tokenizer
    video_id = tok.convert_tokens_to_ids(family.video_token)
    image_id = tok.convert_tokens_to_ids(family.image_token)
    prompts = []
    for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"], strict=True):
        ids = collapse_runs(ids[mask.bool()].tolist(), (video_id, image_id))
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
