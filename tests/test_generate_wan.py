"""``engine generate`` on a tiny random-weight Wan 2.1 pipeline, loaded through our real code.

The pipeline is built once per module by :func:`tiny_wan.build_tiny_wan` (real diffusers
classes as in diffusers' own Wan tests, a tokenizer made here, ``save_pretrained`` with
safetensors). With random weights these tests prove plumbing — the Wan family is chosen
from ``model_index.json``, flow-matching steps run through the one ring sampler, 4
frames per latent frame, determinism, LoRA loading, cancellation, refusals — and one
behaviour that needs no trained weights: the causal decoder's temporal wrap.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny_models import lay_out_hub_cache
from tiny_wan import build_tiny_wan, save_tiny_lora

from engine import cli
from engine.errors import BadInput, JobCancelled
from engine.media import list_frames, read_image, read_manifest
from engine.progress import JobContext

#: 128×64 px, 12 frames → a ring latent of 3 frames × 8 rows × 16 columns; windows of
#: 8 frames × 64×32 px → 2 latent frames × 4 × 8, so windows wrap the loop and the seam.
SMALL = ["--width", "128", "--height", "64", "--frames", "12", "--window-size", "64x32"]
FAST = ["--window-frames", "8", "--steps", "2", "--sphere-latitudes", "0",
        "--sphere-longitudes", "1", "--device", "cpu"]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


#: The commit the tiny Wan is filed under in a test hub cache.
WAN_COMMIT = "2" * 40


@pytest.fixture(scope="module")
def wan_with_variant(tiny_wan, tmp_path_factory):
    """The tiny Wan plus ``fp16``-infixed weights from other random weights (seed 1), as a
    hub repository's variant files sit beside its plain ones."""
    import shutil

    folder = tmp_path_factory.mktemp("models") / "tiny-wan-variant"
    shutil.copytree(tiny_wan, folder)
    return build_tiny_wan(folder, seed=1, variant="fp16")


@pytest.fixture
def wan_hub_cache(tiny_wan, tmp_path, monkeypatch):
    """The tiny Wan filed in a Hugging Face hub cache as ``panoloop-test/wan`` at
    ``WAN_COMMIT`` (huggingface_hub's own layout), which the hub library reads."""
    import huggingface_hub.constants

    cache = tmp_path / "hub-cache"
    lay_out_hub_cache(tiny_wan, cache, "panoloop-test/wan", WAN_COMMIT)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def tiny_lora(tiny_wan, tmp_path_factory):
    return save_tiny_lora(tiny_wan, tmp_path_factory.mktemp("loras") / "tiny-lora")


@pytest.fixture(scope="module")
def backend(tiny_wan):
    from engine.generate.wan import inspect_wan, load_wan

    return load_wan(inspect_wan(str(tiny_wan)), window=(2, 4, 8), device="cpu")


def generate(model, out, *extra: str, ctx: JobContext | None = None) -> int:
    argv = ["generate", "--prompt", "misty pine forest", "--model", str(model), "--out", str(out)]
    return cli.main([*argv, *SMALL, *FAST, "--seed", "2", *extra], ctx=ctx or JobContext())


def _frames(folder) -> list[np.ndarray]:
    return [read_image(p).astype(np.float64) for p in list_frames(folder / "frames")]


def _jumps(frames) -> np.ndarray:
    """Mean absolute change into each frame from the one before it; [0] is last → first."""
    return np.array([np.abs(frames[i] - frames[i - 1]).mean() for i in range(len(frames))])


def test_wan_generates_4_frames_per_latent_frame_that_loop_and_repeat(tiny_wan, tmp_path):
    assert generate(tiny_wan, tmp_path / "a") == 0
    frames = _frames(tmp_path / "a")
    assert len(frames) == 12 and frames[0].shape == (64, 128, 3)
    manifest = read_manifest(tmp_path / "a")
    assert manifest["backend"] == "wan" and manifest["model_family"] == "wan2.1"
    assert manifest["step_rule"] == "flow-match-euler" and manifest["flow_shift"] == 3.0
    assert manifest["window"] == [2, 4, 8] and manifest["time_factor"] == 4
    assert manifest["fps"] == manifest["model_fps"] == 16.0 and manifest["loras"] == []
    assert manifest["prompt_tokens"] == len("misty pine forest") + 1  # characters + </s>
    jumps = _jumps(frames)
    assert jumps[0] <= 2 * np.median(jumps[1:])  # the loop point is no special jump
    assert generate(tiny_wan, tmp_path / "b") == 0
    for a, b in zip(frames, _frames(tmp_path / "b"), strict=True):
        assert np.array_equal(a, b)


def test_a_lora_loads_through_peft_changes_the_frames_and_is_recorded(
    tiny_wan, tiny_lora, tmp_path
):
    assert generate(tiny_wan, tmp_path / "plain", "--steps", "1") == 0
    lora = f"{tiny_lora}:0.8"
    assert generate(tiny_wan, tmp_path / "lora", "--steps", "1", "--lora", lora) == 0
    plain, with_lora = _frames(tmp_path / "plain"), _frames(tmp_path / "lora")
    assert np.abs(plain[0] - with_lora[0]).mean() > 0.5
    (recorded,) = read_manifest(tmp_path / "lora")["loras"]
    assert recorded["source"] == str(tiny_lora) and recorded["scale"] == 0.8
    assert len(recorded["sha256"]) == 64


def test_a_weight_variant_loads_its_own_files_and_is_recorded(wan_with_variant, tmp_path):
    """Plumbing: ``--variant fp16`` reads the ``.fp16`` files (other weights, so other
    frames) and the manifest names the variant; without it the plain files load."""
    assert generate(wan_with_variant, tmp_path / "plain", "--steps", "1") == 0
    assert generate(wan_with_variant, tmp_path / "fp16", "--steps", "1", "--variant", "fp16") == 0
    plain, fp16 = _frames(tmp_path / "plain"), _frames(tmp_path / "fp16")
    assert np.abs(plain[0] - fp16[0]).mean() > 0.5
    assert read_manifest(tmp_path / "plain")["variant"] is None
    assert read_manifest(tmp_path / "fp16")["variant"] == "fp16"


def test_a_hub_id_at_a_revision_loads_offline_from_the_cache(tiny_wan, wan_hub_cache, tmp_path):
    """Plumbing: ``org/name --revision COMMIT --offline`` resolves through huggingface_hub's
    cache to the same weights as the folder (same frames) and records the commit."""
    assert generate(tiny_wan, tmp_path / "folder", "--steps", "1") == 0
    argv = ["--steps", "1", "--offline", "--revision", WAN_COMMIT]
    assert generate("panoloop-test/wan", tmp_path / "hub", *argv) == 0
    assert read_manifest(tmp_path / "hub")["revision"] == WAN_COMMIT
    for a, b in zip(_frames(tmp_path / "folder"), _frames(tmp_path / "hub"), strict=True):
        assert np.array_equal(a, b)


def test_cancel_mid_denoise_writes_nothing(tiny_wan, tmp_path):
    ctx = JobContext()

    def progress(stage: str, step: int, total: int) -> None:
        if stage.startswith("denoise") and step == 2:
            ctx.cancel.cancel()

    ctx.progress = progress
    assert generate(tiny_wan, tmp_path / "out", ctx=ctx) == JobCancelled.exit_code
    assert list(tmp_path.iterdir()) == []


def _periodic_latent(frames: int) -> torch.Tensor:
    """A smooth periodic ring latent (16, frames, 8, 16): two random fields on a circle,
    ``a·cos θ + b·sin θ`` with θ = 2πk/frames, so every latent step is alike."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(16, 1, 8, 16, generator=generator) for _ in range(2))
    theta = 2 * torch.pi * torch.arange(frames).view(1, frames, 1, 1) / frames
    return 2 * (a * torch.cos(theta) + b * torch.sin(theta))


def test_causal_decode_with_wrapped_context_loops_and_without_it_does_not(backend):
    """Behaviour: on a periodic latent the last→first jump of the decoded frames is within
    [0.8, 1.25] of the median neighbouring jump; Wan's plain causal decode of the same
    latents (no temporal context before the first frame) fails that test."""
    from engine.generate.wan import to_uint8

    latent = _periodic_latent(8)
    looped = [f.astype(np.float64) for f in backend.decode_video(latent, JobContext())]
    assert len(looped) == 32  # 4 per latent frame, no special first frame
    jumps = _jumps(looped)
    assert 0.8 <= jumps[0] / np.median(jumps[1:]) <= 1.25, jumps
    plain = [f.astype(np.float64) for f in to_uint8(backend.decode_clip(latent))]
    assert len(plain) == 29  # Wan's own 1 + 4·(n − 1)
    jumps = _jumps(plain)
    assert not 0.8 <= jumps[0] / np.median(jumps[1:]) <= 1.25, jumps


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def pickle_lora(tmp_path_factory):
    path = tmp_path_factory.mktemp("loras") / "lora.bin"
    path.write_bytes(b"a pickle would run code")
    return path


@pytest.fixture(scope="module")
def other_base_lora(tiny_wan, tmp_path_factory):
    return save_tiny_lora(tiny_wan, tmp_path_factory.mktemp("loras") / "other", wrong_inputs=8)


BAD = [
    (["--frames", "18"], "frames 18"),
    (["--lora", "{pickle}"], "lora.bin"),
    (["--lora", "{other}"], "another base"),
    (["--lora", "{good}:nan"], "nan"),
    (["--lora", "{good}:x"], "'x'"),
    (["--window-size", "64by32"], "64by32"),
    (["--motion-adapter", "some/adapter"], "--motion-adapter"),
    (["--variant", "fp16"], "no fp16 safetensors weights"),
    (["--revision", "v2"], "--revision v2"),
]


@pytest.mark.parametrize(("extra", "named"), BAD, ids=[b[1] for b in BAD])
def test_bad_input_is_refused_before_sampling(
    extra, named, tiny_wan, tiny_lora, pickle_lora, other_base_lora, tmp_path, capsys
):
    subs = {"{pickle}": str(pickle_lora), "{other}": str(other_base_lora)}
    extra = [subs.get(a, a).replace("{good}", str(tiny_lora)) for a in extra]
    ctx = JobContext()
    stages: list[str] = []
    ctx.progress = lambda stage, step, total: stages.append(stage)
    before = sorted(tmp_path.rglob("*"))
    assert generate(tiny_wan, tmp_path / "out", *extra, ctx=ctx) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0], err
    assert not any(s.startswith("denoise") for s in stages)
    assert sorted(tmp_path.rglob("*")) == before


# --------------------------------------------------------------------------- memory

#: Parameters of Wan2.1-T2V-1.3B's components (diffusers' classes built on the meta
#: device from the hub's configs): transformer, Wan VAE, UMT5-XXL encoder.
WAN_1_3B_PARAMS = {"transformer": 1_418_996_800, "vae": 126_892_531, "text_encoder": 5_680_910_336}


def unique_values(module: torch.nn.Module) -> int:
    """Values a module's saved tensors hold, tied ones (UMT5's shared embedding) once."""
    tensors = {t.data_ptr(): t.numel() for t in module.state_dict().values()}
    return sum(tensors.values())


def test_wan_shape_comes_from_its_configs_and_weight_headers(tiny_wan, backend):
    from engine.generate.memory import read_wan_shape

    shape = read_wan_shape(tiny_wan)
    real = {name: unique_values(getattr(backend.pipe, name)) for name in shape.component_params}
    assert shape.component_params == real
    assert (shape.width, shape.ffn, shape.patch) == (24, 32, (1, 2, 2))
    assert (shape.vae_factor, shape.time_factor, shape.vae_base) == (8, 4, 3)


def test_full_size_wan_estimate_at_2k_needs_vae_tiling_on_24_gib_and_more_than_8_gib():
    """The estimate for Wan2.1-T2V-1.3B at 2048×1024, 84 frames, its 21×60×104 window,
    bf16 with guidance: weights ≈ 14.7 GB (UMT5-XXL is 5.7 G parameters). Wan's VAE
    decodes 4 full-resolution frames of 96 channels per latent frame, so untiled at 2K
    it does not fit 24 GiB and the refusal says to add --vae-tiling; tiled it fits.
    8 GiB is refused even with offload (the text encoder alone is 11 GB in bf16)."""
    from engine.generate.memory import JobSize, WanShape, check_fits, estimate

    shape = WanShape(width=1536, ffn=8960, patch=(1, 2, 2), vae_base=96, latent_channels=16,
                     vae_factor=8, time_factor=4, text_tokens=512, text_width=4096,
                     component_params=WAN_1_3B_PARAMS)  # fmt: skip
    job = JobSize(2048, 1024, 84, 84, (21, 60, 104), True, "bfloat16")
    need = estimate(shape, job)
    assert 14.0e9 < need.weights < 15.0e9 and need.call_name == "transformer"
    assert 2 * 2**30 < need.unet_call < 5 * 2**30  # 2 × 32,760 tokens of 27,136 values
    gib = 2**30
    with pytest.raises(BadInput, match=r"transformer call .* 24.0 GiB free: add --vae-tiling$"):
        check_fits(shape, job, "cuda", free=24 * gib, host=64 * gib)
    check_fits(shape, replace(job, vae_tiling=True), "cuda", free=24 * gib, host=64 * gib)
    with pytest.raises(BadInput, match="8.0 GiB free: choose a smaller size"):
        check_fits(shape, job, "cuda", free=8 * gib, host=64 * gib)


def test_an_absurd_wan_size_is_refused_by_the_estimate_before_loading(tiny_wan, tmp_path, capsys):
    """``--width 65536`` on Wan: one line with the numbers, exit 2, nothing written, and
    no weight loaded (the refusal names the estimate's parts)."""
    argv = ["--width", "65536", "--height", "32768"]
    out = tmp_path / "out"
    code = cli.main(["generate", "--prompt", "pine", "--model", str(tiny_wan), "--out", str(out),
                     *FAST, "--frames", "12", *argv], ctx=JobContext())  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "65536x32768" in err[0] and "transformer call" in err[0], err
    assert list(tmp_path.iterdir()) == []
