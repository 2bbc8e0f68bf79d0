"""Image-to-video through the ring sampler (``generate --image``) and the diffusion motion
prior (``animate --prior diffusion``), on tiny random-weight AnimateDiff and Wan pipelines.

The models are built from the real diffusers classes, saved with ``save_pretrained`` and
loaded through PanoLoop's own loading code, so every stage is real code — but their
weights are random: these tests prove plumbing (which latent the sampler starts from, how
far it is noised, that the loop and the manifest come out whole), never that a model's
motion looks natural. Sizes are tiny (128×64 px, 2–3 steps).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from tiny_models import build_tiny_animatediff
from tiny_wan import build_tiny_wan

from engine import cli
from engine.generate.command import still_for_model
from engine.media import list_frames, read_image, read_manifest
from engine.progress import JobContext

AD_SMALL = ["--width", "128", "--height", "64", "--frames", "4", "--window-frames", "4"]
WAN_SMALL = ["--width", "128", "--height", "64", "--frames", "12", "--window-size", "64x32",
             "--window-frames", "8"]  # fmt: skip
FAST = ["--steps", "3", "--sphere-latitudes", "0", "--sphere-longitudes", "1", "--seed", "1"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny tensors gain nothing from threads on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "animatediff": build_tiny_animatediff(root / "tiny-animatediff"),
        "wan": build_tiny_wan(root / "tiny-wan"),
    }


@pytest.fixture(scope="module")
def still_png(tmp_path_factory) -> Path:
    """A 2:1 still with structure at every scale (gradients and stripes), 8-bit."""
    yy, xx = np.mgrid[0:64, 0:128]
    still = np.dstack([(xx * 2) % 256, (yy * 4) % 256, ((xx + yy) * 3) % 256]).astype(np.uint8)
    path = tmp_path_factory.mktemp("still") / "still.png"
    cv2.imwrite(str(path), still[..., ::-1])
    return path


def generate(family: str, model: Path, out: Path, *extra: str) -> int:
    small = AD_SMALL if family == "animatediff" else WAN_SMALL
    argv = ["generate", "--prompt", "misty pine forest", "--model", str(model), "--out", str(out)]
    return cli.main([*argv, *small, *FAST, *extra], ctx=JobContext())


def frames_of(folder: Path) -> np.ndarray:
    return np.stack([read_image(p).astype(np.float64) for p in list_frames(folder / "frames")])


def reconstruction(family: str, model: Path, still: Path, frames: int) -> np.ndarray:
    """The still through the model's own VAE (encode, decode): what a denoise strength
    near 0 tends to. With random weights it looks nothing like the still, so "closer to
    the still" is measured against it."""
    pixels = still_for_model(read_image(still), 128, 64)
    if family == "animatediff":
        from engine.generate.loading import inspect_model, load_animatediff

        backend = load_animatediff(inspect_model(str(model)), window_frames=4, device="cpu")
        return backend.decode_frame(backend.encode_still(pixels, 1)[:, 0]).astype(np.float64)
    from engine.generate.wan import inspect_wan, load_wan

    backend = load_wan(inspect_wan(str(model)), window=(2, 4, 8), device="cpu")
    ring = backend.encode_still(pixels, frames // backend.time_factor)
    return np.stack(backend.decode_video(ring, JobContext())).astype(np.float64)


# --------------------------------------------------------------------------- generate --image


@pytest.mark.parametrize("family", ["animatediff", "wan"])
def test_image_to_video_at_strength_1_is_text_to_video_and_lower_stays_near_the_still(
    family, models, still_png, tmp_path
):
    """Plumbing with tiny weights: strength 1 ignores the still (the text-to-video run of
    the same seed, bit for bit); strength 0.4 starts from the still's latent noised to the
    last step's level, so its frames lie nearer the still's VAE reconstruction than
    strength 1's do; the manifest names the still (path, SHA-256) and the strength."""
    model, image = models[family], ["--image", str(still_png)]
    assert generate(family, model, tmp_path / "t2v") == 0
    assert generate(family, model, tmp_path / "s1", *image, "--denoise-strength", "1") == 0
    assert generate(family, model, tmp_path / "s04", *image, "--denoise-strength", "0.4") == 0
    t2v, s1, s04 = (frames_of(tmp_path / name) for name in ("t2v", "s1", "s04"))
    assert np.array_equal(t2v, s1)
    target = reconstruction(family, model, still_png, len(s04))
    near, far = np.abs(s04 - target).mean(), np.abs(s1 - target).mean()
    assert near < 0.8 * far, (near, far)
    manifest = read_manifest(tmp_path / "s04")
    assert manifest["denoise_strength"] == 0.4
    assert manifest["init_image"]["path"] == str(still_png)
    assert len(manifest["init_image"]["sha256"]) == 64
    # 3 steps × 0.4 → int(1.2) = 1 step runs: the last one, on the full-size canvas.
    assert [s["steps"] for s in manifest["stages"]] == [[2, 3]]
    assert "denoise_strength" not in read_manifest(tmp_path / "t2v")


@pytest.fixture(scope="module")
def unloadable_model(models, tmp_path_factory) -> Path:
    """The tiny model's configs with garbage weights: a refusal that names our value
    proves the check ran before anything loaded."""
    folder = tmp_path_factory.mktemp("models") / "garbage"
    shutil.copytree(models["animatediff"], folder)
    for weights in folder.rglob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    return folder


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--denoise-strength", "nan"], "nan"),
        (["--denoise-strength", "0"], "got 0"),
        (["--denoise-strength", "-0.5"], "-0.5"),
        (["--denoise-strength", "1.5"], "1.5"),
        (["--denoise-strength", "0.1"], "needs --image"),
        (["--image", "STILL", "--denoise-strength", "0.2"], "0.2 of 3 steps"),
        (["--image", "WIDE"], "is 128x32"),
        (["--image", "BROKEN"], "broken.png"),
        (["--image", "MISSING"], "missing.png"),
    ],
)
def test_bad_image_to_video_input_is_refused_before_loading(
    extra, named, unloadable_model, still_png, tmp_path, capsys
):
    wide, broken = tmp_path / "wide.png", tmp_path / "broken.png"
    cv2.imwrite(str(wide), np.zeros((32, 128, 3), np.uint8))
    broken.write_bytes(b"\x89PNG not really")
    missing = tmp_path / "missing.png"
    paths = {"STILL": still_png, "WIDE": wide, "BROKEN": broken, "MISSING": missing}
    extra = [str(paths.get(a, a)) for a in extra]
    before = set(tmp_path.iterdir())
    code = generate("animatediff", unloadable_model, tmp_path / "out", *extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and named in err[-1], err
    assert set(tmp_path.iterdir()) == before


# --------------------------------------------------------------------------- animate --prior


@pytest.fixture(scope="module")
def hdr_still(still_png, tmp_path_factory) -> Path:
    """The still as scene-linear HDR (values up to 4, exact in half floats) in an EXR."""
    from engine.media import write_image

    linear = (read_image(still_png).astype(np.float32) / 255.0) ** 2.2 * 4.0
    linear = linear.astype(np.float16).astype(np.float32)
    return write_image(tmp_path_factory.mktemp("hdr") / "still.exr", linear)


@pytest.fixture(scope="module")
def left_half_mask(tmp_path_factory) -> Path:
    """White (moves) on the left half, black (exactly still) on the right."""
    mask = np.zeros((64, 128), np.uint8)
    mask[:, :64] = 255
    path = tmp_path_factory.mktemp("mask") / "mask.png"
    cv2.imwrite(str(path), mask)
    return path


def animate(still: Path, out: Path, *extra: str) -> int:
    argv = ["animate", str(still), "--out", str(out), "--seconds", "1", "--fps", "8"]
    return cli.main([*argv, *extra], ctx=JobContext())


def test_animate_with_the_diffusion_prior_writes_a_complete_exact_loop(
    models, hdr_still, left_half_mask, tmp_path
):
    """Plumbing with tiny weights (the model's motion is noise; every stage is real code):
    the still is animated by the model at its native size (128×64 for the tiny UNet), the
    clip's motion moves the full-size HDR source: frames are the source's own pixels (HDR
    kept, the masked half bit-identical), the loop is exact, and the manifest and
    motion.npz say which model, revision, strength, seed and steps made the motion; a later
    ``animate --motion`` of that file carries the provenance on."""
    from engine.animate.pipeline import LoopRenderer
    from engine.animate.spectral import load_volume

    model, out = models["animatediff"], tmp_path / "loop"
    diffusion = ["--prior", "diffusion", "--model", str(model), "--steps", "2",
                 "--denoise-strength", "0.5", "--seed", "3"]  # fmt: skip
    lossless = ["--exr-codec", "piz"]  # on disk, still pixels are the source bit for bit
    assert animate(hdr_still, out, *diffusion, *lossless, "--mask", str(left_half_mask)) == 0
    source = read_image(hdr_still)
    frames = [read_image(p) for p in list_frames(out / "frames")]
    assert len(frames) == 8 and all(f.dtype == np.float32 for f in frames)
    assert source.max() > 1.0 and max(float(f.max()) for f in frames) > 1.0
    assert all(np.array_equal(f[:, 64:], source[:, 64:]) for f in frames)
    moved = [float(np.abs(f[:, :64] - source[:, :64]).mean()) for f in frames[1:]]
    assert max(moved) > 0.01, moved
    manifest = read_manifest(out)
    origin = manifest["motion_origin"]
    assert manifest["prior"] == "diffusion" and origin["kind"] == "diffusion"
    assert origin["model"] == str(model) and origin["revision"].startswith("sha256:")
    assert (origin["denoise_strength"], origin["seed"], origin["steps"]) == (0.5, 3, 2)
    assert origin["steps_run"] == 1 and origin["size"] == [128, 64] and origin["frames"] == 16
    volume = load_volume(out / "motion.npz")
    assert volume.info["source"] == origin
    # The loop is exact: frame 8 of the loop is frame 0, and frame 0 is what was written.
    renderer = LoopRenderer(source, volume, 8, 1.0, fps=8.0)
    assert np.array_equal(renderer.frame(8), renderer.frame(0))
    assert np.abs(renderer.frame(0) - frames[0]).max() <= 2e-3 * max(1.0, float(source.max()))
    # Provenance travels with the motion file.
    assert animate(hdr_still, tmp_path / "again", "--motion", str(out / "motion.npz")) == 0
    assert read_manifest(tmp_path / "again")["motion_origin"] == origin


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--prior", "diffusion"], "needs --model"),
        (["--model", "MODEL"], "--model are for --prior diffusion"),
        (["--prior", "diffusion", "--model", "MODEL", "--denoise-strength", "1"], "got 1.0"),
        (["--prior", "diffusion", "--model", "MODEL", "--denoise-strength", "nan"], "nan"),
        (["--prior", "diffusion", "--model", "MODEL", "--steps", "0"], "--steps"),
        (["--prior", "diffusion", "--model", "MODEL", "--motion-map", "MASK"], "--motion-map"),
        (["--prior", "diffusion", "--model", "MODEL", "--seconds", "0"], "seconds"),
        (["--prior", "diffusion", "--model", "NOWHERE"], "nowhere"),
    ],
)
def test_bad_diffusion_prior_input_is_refused_before_loading(
    extra, named, unloadable_model, still_png, left_half_mask, tmp_path, capsys
):
    paths = {"MODEL": unloadable_model, "MASK": left_half_mask, "NOWHERE": tmp_path / "nowhere"}
    extra = [str(paths.get(a, a)) for a in extra]
    before = set(tmp_path.iterdir())
    code = animate(still_png, tmp_path / "out", *extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and named in err[-1], err
    assert set(tmp_path.iterdir()) == before


def test_a_truncated_plan_keeps_the_coarse_pass_only_before_the_refine_starts():
    """Behaviour of the plan (no model): strength 1 keeps the plan as it is; a start before
    the refine pass cuts the coarse stages at it; a start inside the refine pass leaves the
    coarse pass out, so the still's full-size latent is what the refine steps denoise."""
    from engine.generate import schedule as sch

    plan = sch.plan_stages(25, (32, 64), sch.WindowGrid((4, 8, 8), 1))
    assert [(s.name, s.scale, s.start) for s in plan][:1] == [("sphere", 2, 0)]
    refine = next(s for s in plan if s.scale == 1).start
    assert sch.stages_from(plan, 0) == plan
    early = sch.stages_from(plan, refine - 2)
    assert early[0].scale == 2 and early[0].start == refine - 2
    assert [s.start for s in early if s.scale == 1][0] == refine
    late = sch.stages_from(plan, refine + 3)
    assert all(s.scale == 1 for s in late) and late[0].start == refine + 3
    assert late[-1].stop == 25
