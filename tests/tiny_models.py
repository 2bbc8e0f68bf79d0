"""Tiny AnimateDiff pipelines with random weights, built from the real diffusers classes.

No weights reach this machine, so tests build the real components at toy size (as
diffusers' own tests do), save them with ``save_pretrained`` (safetensors) and load
them back through PanoLoop's real loading code. Speed and memory do not depend on
weight values; only the pictures are meaningless.

Sizes follow REFERENCE.md §6: UNet blocks (32, 64), one layer per block,
``sample_size`` 8 (an 8×8-latent window, 64×64 px), a CLIP text model of width 32,
a VAE with four narrow blocks (spatial factor 8, as SD 1.5's). The tokenizer is written from a tiny
``vocab.json`` and a ``merges.txt`` holding only the version line.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

#: Latent window of the tiny UNet (``sample_size``), in latent pixels.
TINY_SAMPLE_SIZE = 8
#: Frames the tiny motion adapter was "trained" for (its positional-embedding length).
TINY_MAX_FRAMES = 32


def build_tiny_animatediff(folder: Path) -> Path:
    """Build a random-weight AnimateDiff pipeline and ``save_pretrained`` it into ``folder``.

    Every component is seeded with ``torch.manual_seed(0)`` before it is built, so two
    calls write identical weights. Returns ``folder`` (it holds ``model_index.json``).
    """
    import torch
    from diffusers import (
        AnimateDiffPipeline,
        AutoencoderKL,
        DDIMScheduler,
        MotionAdapter,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    block_out_channels = (32, 64)

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=block_out_channels,
        layers_per_block=1,
        sample_size=TINY_SAMPLE_SIZE,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=2,
        attention_head_dim=8,
    )
    torch.manual_seed(0)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="linear",
        clip_sample=False,
        steps_offset=1,
        set_alpha_to_one=False,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(16, 16, 16, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=2,
        layers_per_block=1,
        sample_size=TINY_SAMPLE_SIZE * 8,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=2,
            pad_token_id=1,
            vocab_size=1000,
            max_position_embeddings=77,
        )
    )
    torch.manual_seed(0)
    motion_adapter = MotionAdapter(
        block_out_channels=block_out_channels,
        motion_layers_per_block=1,
        motion_norm_num_groups=2,
        motion_num_attention_heads=4,
        motion_max_seq_length=TINY_MAX_FRAMES,
    )
    tokenizer = _tiny_clip_tokenizer(folder / "_tokenizer_src")

    pipe = AnimateDiffPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        motion_adapter=motion_adapter,
        scheduler=scheduler,
        feature_extractor=None,
        image_encoder=None,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    for leftover in (folder / "_tokenizer_src").iterdir():
        leftover.unlink()
    (folder / "_tokenizer_src").rmdir()
    return folder


def _tiny_clip_tokenizer(folder: Path):
    """A CLIP tokenizer over lowercase letters, digits and a few symbols (no merges).

    Ids stay below the text model's ``vocab_size`` (1000); 0/1/2 are the special tokens
    the text config names (bos, pad, eos).
    """
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2}
    for char in string.ascii_lowercase + string.digits + ".,'-":
        for token in (char, char + "</w>"):
            vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=77, pad_token="!")


if __name__ == "__main__":  # pragma: no cover - a manual helper
    import sys

    print(build_tiny_animatediff(Path(sys.argv[1])))
