"""Loading like diffusers, safer: hub layouts, variants, revisions, untrusted configs.

The fixtures mirror the real repositories' layouts (see :func:`tiny_models.build_hub_like_sd15`
and :func:`tiny_models.build_motion_adapter`): an SD 1.5 base with a PNDM
``scaled_linear`` scheduler, a pickle-only safety checker, ``.fp16.safetensors`` beside
the full files and a root single-file checkpoint; a motion adapter with config and
weights at its root. Weights are tiny and random (real diffusers classes), loaded through
our real loader — so these tests prove plumbing and refusals, not pictures. Files
PanoLoop must never read hold bytes no loader accepts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tiny_models import (
    build_hub_like_sd15,
    build_motion_adapter,
    build_sdxl_configs,
    lay_out_hub_cache,
)

from engine import cli
from engine.errors import BadInput
from engine.generate.loading import hub_files, inspect_model, weight_files
from engine.media import list_frames, read_manifest
from engine.progress import JobContext

SMALL = ["--width", "128", "--height", "64", "--frames", "4", "--window-frames", "4"]
FAST = ["--steps", "2", "--schedule", "windows", "--device", "cpu"]
BASE_COMMIT = "1" * 40
ADAPTER_COMMIT = "2" * 40

#: The file listing of stable-diffusion-v1-5/stable-diffusion-v1-5 (as the hub shows it).
SD15_LISTING = [
    ".gitattributes",
    "README.md",
    "feature_extractor/preprocessor_config.json",
    "model_index.json",
    "safety_checker/config.json",
    "safety_checker/model.fp16.safetensors",
    "safety_checker/model.safetensors",
    "safety_checker/pytorch_model.bin",
    "safety_checker/pytorch_model.fp16.bin",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.fp16.safetensors",
    "text_encoder/model.safetensors",
    "text_encoder/pytorch_model.bin",
    "text_encoder/pytorch_model.fp16.bin",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.bin",
    "unet/diffusion_pytorch_model.fp16.bin",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_pytorch_model.non_ema.bin",
    "unet/diffusion_pytorch_model.non_ema.safetensors",
    "unet/diffusion_pytorch_model.safetensors",
    "v1-5-pruned-emaonly.ckpt",
    "v1-5-pruned-emaonly.safetensors",
    "v1-5-pruned.ckpt",
    "v1-5-pruned.safetensors",
    "v1-inference.yaml",
    "vae/config.json",
    "vae/diffusion_pytorch_model.bin",
    "vae/diffusion_pytorch_model.fp16.bin",
    "vae/diffusion_pytorch_model.fp16.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
]
PIPELINE = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
CONFIGS = [
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "unet/config.json",
    "vae/config.json",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- file selection


def test_hub_files_fetch_only_the_used_components_in_one_variant():
    full = hub_files(SD15_LISTING, PIPELINE, variant=None)
    assert full == sorted(
        CONFIGS
        + [
            "text_encoder/model.safetensors",
            "unet/diffusion_pytorch_model.safetensors",
            "vae/diffusion_pytorch_model.safetensors",
        ]
    )
    half = hub_files(SD15_LISTING, PIPELINE, variant="fp16")
    assert half == sorted(
        CONFIGS
        + [
            "text_encoder/model.fp16.safetensors",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "vae/diffusion_pytorch_model.fp16.safetensors",
        ]
    )
    assert hub_files(SD15_LISTING, PIPELINE, variant=None, weights=False) == CONFIGS


def test_hub_files_of_a_motion_adapter_take_its_root_and_sharded_weights_with_their_index():
    adapter = ["README.md", "config.json", "diffusion_pytorch_model.fp16.safetensors",
               "diffusion_pytorch_model.safetensors", ".gitattributes"]  # fmt: skip
    assert hub_files(adapter, ("",), "fp16") == [
        "config.json",
        "diffusion_pytorch_model.fp16.safetensors",
    ]
    sharded = [
        "unet/config.json",
        "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.json",
        "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
    ]
    assert weight_files(sharded, "unet", None) == [
        "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.json",
    ]
    assert weight_files(sharded, "unet", "fp16") == [
        "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
    ]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def sd15(models) -> Path:
    return build_hub_like_sd15(models / "sd15")


@pytest.fixture(scope="module")
def adapter(models) -> Path:
    return build_motion_adapter(models / "adapter")


@pytest.fixture(scope="module")
def hub_cache(models, sd15, adapter) -> Path:
    cache = models / "hub-cache"
    lay_out_hub_cache(sd15, cache, "panoloop-test/sd15", BASE_COMMIT)
    lay_out_hub_cache(adapter, cache, "panoloop-test/adapter", ADAPTER_COMMIT)
    return cache


@pytest.fixture
def use_hub_cache(hub_cache, monkeypatch) -> Path:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    return hub_cache


def generate(out: Path, model: str, *extra: str) -> int:
    argv = ["generate", "--prompt", "misty pine forest", "--model", model, "--out", str(out)]
    return cli.main([*argv, *SMALL, *FAST, *extra], ctx=JobContext())


# --------------------------------------------------------------------------- loading


def test_hub_like_base_plus_adapter_generates_with_the_animatediff_schedule(
    sd15, adapter, tmp_path
):
    """The pickle-only safety checker, the feature extractor and the root checkpoint are
    never inspected or read; the base's PNDM scaled_linear config becomes AnimateDiff's
    linear DDIM (first timestep 999)."""
    out = tmp_path / "out"
    assert generate(out, str(sd15), "--motion-adapter", str(adapter)) == 0
    manifest = read_manifest(out)
    assert manifest["scheduler"]["beta_schedule"] == "linear"
    assert manifest["scheduler"]["timestep_spacing"] == "linspace"
    assert manifest["scheduler"]["timesteps"] == [999, 0]
    assert manifest["motion_adapter"] == str(adapter)
    assert manifest["variant"] is None and manifest["revision"].startswith("sha256:")
    assert len(list_frames(out / "frames")) == 4


def test_hub_id_loads_offline_from_the_cache_and_records_the_commit(use_hub_cache, tmp_path):
    out = tmp_path / "out"
    code = generate(out, "panoloop-test/sd15", "--motion-adapter", "panoloop-test/adapter",
                    "--offline", "--revision", BASE_COMMIT, "--variant", "fp16")  # fmt: skip
    assert code == 0
    manifest = read_manifest(out)
    assert manifest["model"] == "panoloop-test/sd15" and manifest["revision"] == BASE_COMMIT
    assert manifest["motion_adapter_revision"] == ADAPTER_COMMIT
    assert manifest["variant"] == "fp16"


def test_fp16_files_are_preferred_on_a_gpu_only_when_every_component_has_them(
    sd15, adapter, tmp_path
):
    info = inspect_model(str(sd15), motion_adapter=str(adapter), prefer_fp16=True)
    assert info.variant == "fp16" and info.adapter.variant == "fp16"
    assert inspect_model(str(sd15), motion_adapter=str(adapter)).variant is None
    lopsided = tmp_path / "lopsided"
    shutil.copytree(adapter, lopsided)
    (lopsided / "diffusion_pytorch_model.fp16.safetensors").unlink()
    assert inspect_model(str(sd15), motion_adapter=str(lopsided), prefer_fp16=True).variant is None


def test_fp16_weights_load_into_float32_on_the_cpu(sd15, adapter):
    from engine.generate.loading import load_animatediff

    info = inspect_model(str(sd15), motion_adapter=str(adapter), variant="fp16")
    backend = load_animatediff(info, device="cpu", window_frames=4)
    assert backend.pipe.unet.dtype == torch.float32
    assert backend.describe()["variant"] == "fp16"


# --------------------------------------------------------------------------- bad input


def _garbage_weights(folder: Path) -> None:
    """Weights no loader accepts: a refusal with exit 2 then proves no load was tried."""
    for weights in folder.rglob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")


@pytest.fixture(scope="module")
def bad_models(models, sd15, adapter) -> dict[str, Path]:
    """Copies of the base and adapter with garbage weights, each with one bad config."""
    made = {}

    def variant(name: str, source: Path, edit) -> None:
        folder = models / "bad" / name
        shutil.copytree(source, folder)
        _garbage_weights(folder)
        edit(folder)
        made[name] = folder

    def set_config(rel: str, key: str, value=None, drop: bool = False):
        def edit(folder: Path) -> None:
            path = folder / rel
            config = json.loads(path.read_text())
            if drop:
                config.pop(key)
            else:
                config[key] = value
            path.write_text(json.dumps(config))

        return edit

    variant("base", sd15, lambda f: None)
    variant("adapter", adapter, lambda f: None)
    variant("index-list", sd15, lambda f: (f / "model_index.json").write_text("[1, 2]"))
    variant("no-sample-size", sd15, set_config("unet/config.json", "sample_size", drop=True))
    variant("text-sample-size", sd15, set_config("unet/config.json", "sample_size", "big"))
    variant("zero-sample-size", sd15, set_config("unet/config.json", "sample_size", 0))
    variant("vae-no-blocks", sd15, set_config("vae/config.json", "block_out_channels", drop=True))
    variant("custom-unet", sd15, set_config("model_index.json", "unet", ["my_code", "FastUNet"]))
    variant("adapter-blocks", adapter, set_config("config.json", "block_out_channels", [32, 96]))
    sdxl_base, sdxl_adapter = models / "bad" / "sdxl-base", models / "bad" / "sdxl-adapter"
    build_sdxl_configs(sdxl_base, sdxl_adapter)
    made["sdxl-base"], made["sdxl-adapter"] = sdxl_base, sdxl_adapter
    return made


BAD = [
    (["--model", "{sdxl-base}"], "SDXL pipeline (text_encoder_2"),
    (["--motion-adapter", "{sdxl-adapter}"], "SDXL motion adapter (block_out_channels [320"),
    (["--variant", "bf16"], "no bf16 safetensors weights in unet/"),
    (["--motion-adapter", "{adapter-blocks}"], "[32, 96]"),
    (["--model", "{index-list}"], "must hold a JSON object, got list"),
    (["--model", "{no-sample-size}"], "sample_size must be a whole number ≥ 1, got None"),
    (["--model", "{text-sample-size}"], "sample_size must be a whole number ≥ 1, got 'big'"),
    (["--model", "{zero-sample-size}"], "sample_size must be a whole number ≥ 1, got 0"),
    (["--model", "{vae-no-blocks}"], "vae/config.json: block_out_channels"),
    (["--model", "{custom-unet}"], "FastUNet"),
    (["--model", "{tiny}"], "already holds motion modules"),
    (["--steps", "100000"], "--steps 100000"),
    (["--device", "tpu"], "device 'tpu'"),
    (["--device", "cuda:x"], "device 'cuda:x'"),
    (["--revision", "abc"], "--revision abc"),
    (["--model", "panoloop-test/sd15", "--offline", "--revision", "9" * 40], "9" * 40),
    (["--model", "panoloop-test/sd15", "--offline", "--revision", "v2"], "revision v2"),
]


@pytest.fixture(scope="module")
def tiny(models, tiny_model) -> Path:
    bad = models / "bad" / "tiny"
    shutil.copytree(tiny_model, bad)
    _garbage_weights(bad)
    return bad


@pytest.mark.parametrize(("extra", "named"), BAD, ids=[b[1][:40] for b in BAD])
def test_bad_model_input_is_refused_before_loading(
    extra, named, bad_models, tiny, use_hub_cache, tmp_path, capsys
):
    """Exit 2, one line naming the value, nothing written — and the weights are garbage,
    so a refusal after loading had started would have been exit 1."""
    subs = {f"{{{k}}}": str(v) for k, v in bad_models.items()} | {"{tiny}": str(tiny)}
    extra = [subs.get(a, a) for a in extra]
    argv = ["generate", "--prompt", "pines", "--model", str(bad_models["base"]),
            "--motion-adapter", str(bad_models["adapter"]), "--out", str(tmp_path / "out"),
            *SMALL, "--steps", "2", "--device", "cpu"]  # fmt: skip
    before = sorted(tmp_path.rglob("*"))
    assert cli.main([*argv, *extra], ctx=JobContext()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0], err
    assert sorted(tmp_path.rglob("*")) == before


def test_the_garbage_weight_base_fails_only_when_loading(bad_models, tmp_path):
    """The twin of the table above: the same garbage-weight folders with good configs
    pass every check and fail at loading (exit 1), so exit 2 there means 'before'."""
    out = tmp_path / "out"
    code = generate(out, str(bad_models["base"]), "--motion-adapter", str(bad_models["adapter"]))
    assert code == 1 and not out.exists()


def test_offline_revision_not_in_cache_names_it(use_hub_cache):
    with pytest.raises(BadInput, match="at revision v9 is not in the local hub cache"):
        inspect_model("panoloop-test/sd15", offline=True, revision="v9")
