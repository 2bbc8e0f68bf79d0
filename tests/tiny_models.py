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
#: The tiny UNet's (and its motion adapter's) channels per level.
TINY_UNET_CHANNELS = (32, 64)
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
        DDIMScheduler,
        MotionAdapter,
    )
    from transformers import CLIPTextModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    block_out_channels = TINY_UNET_CHANNELS

    torch.manual_seed(0)
    unet = _tiny_unet2d()
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
    vae = _tiny_vae()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_tiny_text_config())
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


def _tiny_vae():
    """A VAE with four narrow blocks: spatial factor 8, as SD 1.5's."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
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


def _tiny_text_config():
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
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


# --------------------------------------------------------------------------- hub layouts

#: SD 1.5's ``model_index.json`` as the hub repositories ship it (runwayml /
#: stable-diffusion-v1-5): a StableDiffusionPipeline with a safety checker and a
#: feature extractor AnimateDiff never loads.
SD15_MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.6.0",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
#: SD 1.5's ``scheduler/scheduler_config.json``: PNDM, scaled_linear betas, leading spacing.
SD15_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "clip_sample": False,
}
#: Bytes standing in for files PanoLoop must never read (pickles, single-file checkpoints):
#: anything that tried to load them would fail.
NEVER_READ = b"PanoLoop must never read this file"


def _tiny_unet2d():
    """The tiny SD-1.5-shaped UNet every tiny pipeline here uses (two levels, 32 and 64
    channels, the motion adapter's ``block_out_channels`` too)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=TINY_UNET_CHANNELS,
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


def _save_with_fp16(model, folder: Path) -> None:
    """``save_pretrained`` twice, as hub repositories ship: full files and ``.fp16`` files."""
    import torch

    model.save_pretrained(folder, safe_serialization=True)
    model.to(torch.float16).save_pretrained(folder, safe_serialization=True, variant="fp16")
    model.to(torch.float32)


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def build_hub_like_sd15(folder: Path) -> Path:
    """A tiny SD 1.5 base laid out like the hub's SD 1.5 repositories.

    ``model_index.json`` and the PNDM ``scaled_linear`` scheduler config as the real
    ones; ``unet``/``vae``/``text_encoder`` with full and ``.fp16`` safetensors (plus a
    pickle twin, as the real repositories carry); a ``safety_checker`` whose only
    weights are a pickle file; a ``feature_extractor`` config; a tokenizer as vocab,
    merges and configs; a root single-file checkpoint. Files PanoLoop must not touch
    hold :data:`NEVER_READ`.
    """
    import torch
    from transformers import CLIPTextModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "model_index.json", SD15_MODEL_INDEX)
    _write_json(folder / "scheduler" / "scheduler_config.json", SD15_SCHEDULER)
    _write_json(
        folder / "feature_extractor" / "preprocessor_config.json",
        {"crop_size": 224, "do_center_crop": True, "do_normalize": True, "size": 224},
    )
    _write_json(
        folder / "safety_checker" / "config.json",
        {"_name_or_path": "CompVis/stable-diffusion-safety-checker",
         "architectures": ["StableDiffusionSafetyChecker"]},
    )  # fmt: skip
    (folder / "safety_checker" / "pytorch_model.bin").write_bytes(NEVER_READ)
    (folder / "v1-5-pruned-emaonly.safetensors").write_bytes(NEVER_READ)
    (folder / "v1-inference.yaml").write_text("model: {}\n")
    torch.manual_seed(0)
    _save_with_fp16(_tiny_unet2d(), folder / "unet")
    torch.manual_seed(0)
    _save_with_fp16(_tiny_vae(), folder / "vae")
    torch.manual_seed(0)
    _save_with_fp16(CLIPTextModel(_tiny_text_config()), folder / "text_encoder")
    for component in ("unet", "vae"):
        (folder / component / "diffusion_pytorch_model.bin").write_bytes(NEVER_READ)
    (folder / "text_encoder" / "pytorch_model.bin").write_bytes(NEVER_READ)
    tokenizer = _tiny_clip_tokenizer(folder / "tokenizer")
    tokenizer.save_pretrained(folder / "tokenizer")
    for extra in ("tokenizer.json",):  # the SD 1.5 repositories ship the slow files only
        (folder / "tokenizer" / extra).unlink(missing_ok=True)
    return folder


def build_motion_adapter(folder: Path) -> Path:
    """A tiny motion adapter laid out like guoyww/animatediff-motion-adapter-v1-5-2:
    ``config.json`` and full and ``.fp16`` safetensors at the repository root."""
    import torch
    from diffusers import MotionAdapter

    torch.manual_seed(0)
    adapter = MotionAdapter(
        block_out_channels=(32, 64),
        motion_layers_per_block=1,
        motion_norm_num_groups=2,
        motion_num_attention_heads=4,
        motion_max_seq_length=TINY_MAX_FRAMES,
    )
    _save_with_fp16(adapter, Path(folder))
    return Path(folder)


def build_sdxl_configs(base: Path, adapter: Path) -> tuple[Path, Path]:
    """An SDXL base and an SDXL motion adapter as configs (their weights are never read:
    both are refused at inspection). Configs follow stabilityai/stable-diffusion-xl-base-1.0
    and guoyww/animatediff-motion-adapter-sdxl-beta."""
    index = {
        "_class_name": "StableDiffusionXLPipeline",
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    _write_json(base / "model_index.json", index)
    _write_json(
        base / "unet" / "config.json",
        {"_class_name": "UNet2DConditionModel", "addition_embed_type": "text_time",
         "cross_attention_dim": 2048, "block_out_channels": [320, 640, 1280], "sample_size": 128},
    )  # fmt: skip
    for component in ("unet", "vae", "text_encoder", "text_encoder_2"):
        (base / component).mkdir(parents=True, exist_ok=True)
        name = "model" if component.startswith("text") else "diffusion_pytorch_model"
        (base / component / f"{name}.safetensors").write_bytes(NEVER_READ)
    _write_json(
        adapter / "config.json",
        {"_class_name": "MotionAdapter", "block_out_channels": [320, 640, 1280],
         "motion_layers_per_block": 2, "motion_max_seq_length": 32,
         "motion_mid_block_layers_per_block": 1, "motion_norm_num_groups": 32,
         "motion_num_attention_heads": 8, "use_motion_mid_block": False},
    )  # fmt: skip
    (adapter / "diffusion_pytorch_model.safetensors").write_bytes(NEVER_READ)
    return base, adapter


def lay_out_hub_cache(folder: Path, cache: Path, repo_id: str, commit: str) -> Path:
    """Copy ``folder`` into a Hugging Face hub cache as ``repo_id`` at ``commit``:
    ``models--org--name/snapshots/<commit>/…`` and ``refs/main`` naming the commit
    (huggingface_hub's own layout; it links files to blobs, plain copies read the same)."""
    import shutil

    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


if __name__ == "__main__":  # pragma: no cover - a manual helper
    import sys

    print(build_tiny_animatediff(Path(sys.argv[1])))
