"""A tiny Wan 2.1 pipeline with random weights, built from the real diffusers classes.

Sizes follow diffusers' own Wan tests (``tests/pipelines/wan/test_wan.py``): a VAE of
base width 3 with four blocks (8× space, 4× time, causal), a transformer of 2 layers
with 2 heads of 12, patch 1×2×2; the text encoder is a tiny UMT5 built from a config
and the tokenizer a character-level ``PreTrainedTokenizerFast`` made with ``tokenizers``
(no hub). Everything is written with ``save_pretrained`` (safetensors) and loaded back
through PanoLoop's real loading code. Pictures are meaningless; plumbing is real.
"""

from __future__ import annotations

import string
from pathlib import Path

#: The tiny UMT5's width (the transformer's ``text_dim``).
TINY_TEXT_DIM = 32


def build_tiny_wan(folder: Path, *, seed: int = 0, variant: str | None = None) -> Path:
    """Build a random-weight ``WanPipeline`` and ``save_pretrained`` it into ``folder``.

    Each component is seeded with ``torch.manual_seed(seed)``: two calls write identical
    weights. ``variant`` saves the weights with that infix (``model.fp16.safetensors``)
    beside any already there, as the hub's variant files sit beside the plain ones.
    Returns ``folder`` (it holds ``model_index.json``).
    """
    import torch
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    folder = Path(folder)
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    torch.manual_seed(seed)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=TINY_TEXT_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=128,
            d_model=TINY_TEXT_DIM,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    pipe = WanPipeline(
        tokenizer=tiny_umt5_tokenizer(),
        text_encoder=text_encoder,
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )
    pipe.save_pretrained(folder, safe_serialization=True, variant=variant)
    return folder


def tiny_umt5_tokenizer():
    """A character-level fast tokenizer: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, then
    lowercase letters, digits, space and a few symbols; ``</s>`` ends every text."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for char in string.ascii_lowercase + string.digits + " .,'-":
        vocab.setdefault(char, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=512,
    )


def save_tiny_lora(
    pipe_folder: Path, out: Path, *, rank: int = 4, seed: int = 1, wrong_inputs: int = 0
) -> Path:
    """Random LoRA weights for the tiny Wan transformer's attention projections, saved
    with diffusers' ``WanPipeline.save_lora_weights`` (safetensors, diffusers layout).

    B is random (not zero, as fresh training would leave it), so the LoRA changes the
    model's output. ``wrong_inputs`` > 0 widens every A by that many input features: a
    LoRA made for another base. Returns the .safetensors file.
    """
    import torch
    from diffusers import WanPipeline
    from safetensors.torch import load_file

    shapes = _linear_shapes(Path(pipe_folder) / "transformer")
    generator = torch.Generator().manual_seed(seed)
    layers = {}
    for key, (rows, cols) in shapes.items():
        if ".attn1.to_" not in key and ".attn2.to_" not in key:
            continue
        layer = key.removesuffix(".weight")
        layers[f"transformer.{layer}.lora_A.weight"] = torch.randn(
            rank, cols + wrong_inputs, generator=generator
        )
        layers[f"transformer.{layer}.lora_B.weight"] = torch.randn(rows, rank, generator=generator)
    out.mkdir(parents=True, exist_ok=True)
    WanPipeline.save_lora_weights(out, transformer_lora_layers=_nested(layers),
                                  safe_serialization=True)  # fmt: skip
    files = list(out.glob("*.safetensors"))
    assert len(files) == 1 and load_file(files[0])
    return files[0]


def _nested(flat: dict) -> dict:
    return {key.removeprefix("transformer."): value for key, value in flat.items()}


def _linear_shapes(transformer: Path) -> dict[str, tuple[int, int]]:
    from safetensors import safe_open

    shapes = {}
    for file in transformer.glob("*.safetensors"):
        with safe_open(file, framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118
                shape = tuple(handle.get_slice(key).get_shape())
                if len(shape) == 2 and key.endswith(".weight"):
                    shapes[key] = shape
    return shapes


if __name__ == "__main__":  # pragma: no cover - a manual helper
    import sys

    print(build_tiny_wan(Path(sys.argv[1])))
