"""``engine generate`` on a tiny random-weight AnimateDiff, loaded through our real code.

The pipeline is built once per module by :func:`tiny_models.build_tiny_animatediff`
(real diffusers classes, ``save_pretrained`` with safetensors). Sizes stay tiny
(128×64 px → a 16×8 latent, two 8×8 windows; 4 frames per window) so the file runs
in well under three minutes on two CPU cores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import cli
from engine.errors import JobCancelled
from engine.media import list_frames, read_image, read_manifest, read_mp4
from engine.progress import JobContext

SMALL = ["--width", "128", "--height", "64", "--frames", "4", "--window-frames", "4"]
FAST = ["--steps", "2", "--sphere-latitudes", "0", "--sphere-longitudes", "1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def generate(model: Path, out: Path, *extra: str, ctx: JobContext | None = None) -> int:
    argv = ["generate", "--prompt", "misty pine forest", "--model", str(model), "--out", str(out)]
    return cli.main([*argv, *SMALL, *FAST, "--seed", "1", *extra], ctx=ctx or JobContext())


def test_generate_writes_a_looping_panorama_and_repeats_itself(tiny_model, tmp_path):
    assert generate(tiny_model, tmp_path / "a") == 0
    frames = list_frames(tmp_path / "a" / "frames")
    assert [p.name for p in frames] == [f"frame_{i:06d}.png" for i in range(4)]
    first = read_image(frames[0])
    assert first.shape == (64, 128, 3) and first.dtype == np.uint8
    video, fps = read_mp4(tmp_path / "a" / "panorama.mp4")
    assert len(video) == 4 and video[0].shape == (64, 128, 3) and fps == 8
    manifest = read_manifest(tmp_path / "a")
    assert manifest["projection"] == "equirectangular" and manifest["loop"] is True
    assert (manifest["width"], manifest["height"], manifest["frames"]) == (128, 64, 4)
    assert manifest["prompt"] == "misty pine forest" and manifest["seed"] == 1
    assert manifest["model"] == str(tiny_model) and manifest["revision"].startswith("sha256:")
    assert [s["name"] for s in manifest["stages"]] == ["sphere", "windows"]
    assert {"load", "denoise", "decode"} <= set(manifest["timings"])
    # The same seed gives the same frames, byte for byte.
    assert generate(tiny_model, tmp_path / "b") == 0
    for a, b in zip(frames, list_frames(tmp_path / "b" / "frames"), strict=True):
        assert np.array_equal(read_image(a), read_image(b))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_seed_and_prompt_change_the_latent(backend):
    from engine.generate.sampler import GenerateRequest, sample_latent

    base = dict(width=128, height=64, frames=4, steps=1, schedule="windows")
    one = sample_latent(backend, GenerateRequest("pine", seed=0, **base), JobContext()).latent
    two = sample_latent(backend, GenerateRequest("pine", seed=3, **base), JobContext()).latent
    other = sample_latent(backend, GenerateRequest("sea", seed=0, **base), JobContext()).latent
    assert one.shape == (4, 4, 8, 16)
    assert not torch.equal(one, two) and not torch.equal(one, other)


def test_cancel_mid_denoise_writes_nothing(tiny_model, tmp_path):
    ctx = JobContext()
    seen = []

    def progress(stage: str, step: int, total: int) -> None:
        seen.append(stage)
        if stage.startswith("denoise") and step == 2:
            ctx.cancel.cancel()

    ctx.progress = progress
    code = generate(tiny_model, tmp_path / "out", "--schedule", "windows", ctx=ctx)
    assert code == JobCancelled.exit_code
    assert "decode" not in seen
    assert list(tmp_path.iterdir()) == []


def test_decode_pads_with_wrapped_columns_so_the_seam_is_interior(backend):
    latent = torch.randn(4, 8, 16, generator=torch.Generator().manual_seed(0))
    plain = backend.decode_frame(latent).astype(int)
    rolled = backend.decode_frame(torch.roll(latent, 8, dims=-1)).astype(int)
    # Decoding is (nearly) shift-equivariant around the ring: the seam is not special.
    assert np.abs(np.roll(rolled, -64, axis=1) - plain).mean() < 2.0
    jumps = np.abs(plain - np.roll(plain, 1, axis=1)).mean(axis=(0, 2))
    assert jumps[0] < 2 * jumps[1:].mean()


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def unloadable_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model's configs with garbage weights: if any check ran after loading,
    loading would fail first (exit 1), so exit 2 proves the check ran before the load."""
    folder = tmp_path_factory.mktemp("models") / "garbage"
    shutil.copytree(tiny_model, folder)
    for weights in folder.rglob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    return folder


@pytest.fixture(scope="module")
def pickle_only_model(tiny_model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "pickled"
    shutil.copytree(tiny_model, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    return folder


@pytest.fixture(scope="module")
def no_index_model(tiny_model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "no-index"
    shutil.copytree(tiny_model, folder)
    (folder / "model_index.json").unlink()
    return folder


BAD = [
    (["--width", "128", "--height", "128"], "128x128"),
    (["--width", "200", "--height", "100"], "200"),
    (["--frames", "3"], "frames 3"),
    (["--prompt", "  "], "prompt"),
    (["--steps", "0"], "steps must be at least 1, got 0"),
    (["--guidance", "-1"], "-1"),
    (["--guidance", "nan"], "nan"),
    (["--model", "/nonexistent/panoloop-model"], "/nonexistent/panoloop-model"),
    (["--model", "{no_index}"], "model_index.json"),
    (["--model", "{pickled}"], "diffusion_pytorch_model.bin"),
    (["--model", "panoloop-test/never-downloaded", "--offline"], "panoloop-test/never-downloaded"),
    (["--out", "{existing}"], "already exists"),
    (["--window-frames", "64"], "64"),
]


@pytest.mark.parametrize(("extra", "named"), BAD, ids=[b[1] for b in BAD])
def test_bad_input_is_refused_before_loading(
    extra, named, unloadable_model, pickle_only_model, no_index_model, tmp_path, capsys,
    monkeypatch,
):  # fmt: skip
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    existing = tmp_path / "existing"
    existing.mkdir()
    marker = existing / "keep.txt"
    marker.write_text("mine")
    subs = {"{no_index}": no_index_model, "{pickled}": pickle_only_model, "{existing}": existing}
    extra = [str(subs.get(a, a)) for a in extra]
    argv = ["generate", "--prompt", "misty pine forest", "--model", str(unloadable_model)]
    argv += ["--out", str(tmp_path / "out"), *SMALL, *FAST, *extra]
    before = sorted(tmp_path.rglob("*"))
    assert cli.main(argv, ctx=JobContext()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0], err
    assert sorted(tmp_path.rglob("*")) == before
    assert marker.read_text() == "mine"


def test_cameras_file_is_checked_and_its_views_are_used(tiny_model, tmp_path):
    from engine.generate.sampler import GenerateRequest
    from engine.generate.schedule import camera_views

    bad = tmp_path / "cameras.json"
    bad.write_text(json.dumps([{"name": "cam"}]))
    assert generate(tiny_model, tmp_path / "out", "--cameras", str(bad)) == 2
    assert not (tmp_path / "out").exists()
    from engine.cameras import BlenderCamera

    cam = BlenderCamera("front", ((1, 0, 0, 0), (0, 0, -1, 0), (0, 1, 0, 0), (0, 0, 0, 1)))
    request = GenerateRequest("x", 128, 64, 4, 1, cameras=(cam,))
    assert request.cameras[0].name == "front"
    assert len(camera_views(0, _window(), (4, 8, 16), request.cameras)) == 1


def _window():
    from engine.generate.schedule import WindowGrid

    return WindowGrid((4, 8, 8), 2)


def test_vae_slicing_option_loads_and_slices_the_vae(tiny_model):
    from engine.generate.loading import inspect_model, load_animatediff

    sliced = load_animatediff(
        inspect_model(str(tiny_model)), window_frames=4, device="cpu", vae_slicing=True
    )
    assert sliced.pipe.vae.use_slicing


def test_model_cpu_offload_runs_through_accelerate_hooks_and_changes_no_value(tiny_model, backend):
    """The offload path (accelerate hooks; modules found through ``backend.device``)
    run for real with the CPU standing in for the accelerator: same latent, same frame."""
    from engine.generate.loading import inspect_model, load_animatediff
    from engine.generate.sampler import GenerateRequest, sample_latent

    offloaded = load_animatediff(
        inspect_model(str(tiny_model)), window_frames=4, device="cpu", cpu_offload=True
    )
    assert offloaded.offloaded and offloaded.describe()["cpu_offload"] is True
    assert hasattr(offloaded.pipe.unet, "_hf_hook")  # accelerate's offload hook is on
    request = GenerateRequest("pine", width=128, height=64, frames=4, steps=2, seed=5,
                              schedule="windows")  # fmt: skip
    plain = sample_latent(backend, request, JobContext()).latent
    hooked = sample_latent(offloaded, request, JobContext()).latent
    assert torch.equal(plain, hooked)
    assert np.array_equal(backend.decode_frame(plain[:, 0]), offloaded.decode_frame(hooked[:, 0]))


def _smooth_ring_latent(seed: int) -> torch.Tensor:
    """A (4, 16, 64) latent frame that is smooth and wraps continuously in longitude."""
    base = torch.randn(1, 4, 4, 8, generator=torch.Generator().manual_seed(seed))
    base = torch.cat([base[..., -2:], base, base[..., :2]], dim=-1)
    fine = torch.nn.functional.interpolate(base, scale_factor=8, mode="bicubic")[..., 16:-16]
    return 3 * torch.nn.functional.interpolate(fine, size=(16, 64), mode="area")[0]


def test_vae_tiling_decodes_in_tiles_and_the_wrap_is_no_worse_than_a_tile_border(
    tiny_model, backend
):
    from engine.generate.loading import inspect_model, load_animatediff

    tiled = load_animatediff(
        inspect_model(str(tiny_model)), window_frames=4, device="cpu", vae_tiling=True
    )
    assert tiled.pipe.vae.use_tiling
    for seed in range(3):
        latent = _smooth_ring_latent(seed)
        image = tiled.decode_frame(latent)
        assert image.shape == backend.decode_frame(latent).shape == (128, 512, 3)
        assert not np.array_equal(image, backend.decode_frame(latent))  # tiles were decoded
        img = image.astype(float)
        jumps = np.abs(img - np.roll(img, 1, axis=1)).mean(axis=(0, 2))  # [0]: the 360° wrap
        assert jumps[0] <= jumps[1:].max()
