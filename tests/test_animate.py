"""Looping panoramas rendered from the bundled HDRIs: loop, seam, mask, strength, seed.

The HDRIs are reduced to 256×128 (INTER_AREA) for speed; the CLI tests run one at its
native 1024×512. Differences are measured on the 8-bit tone-mapped frames (what a
viewer sees) so a few very bright HDR pixels (the sun) do not dominate them.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.animate.pipeline import LoopRenderer, render_loop
from engine.animate.priors import ProceduralPrior
from engine.errors import JobCancelled
from engine.media import read_image, to_display_uint8
from engine.progress import JobContext

FRAMES = 24
#: 24 frames at 8 fps: a 3 s loop, long enough for the sway and ripple frequencies.
FPS = 8.0
SIZE = (256, 128)


def reduced(hdri_dir, name: str) -> np.ndarray:
    image = read_image(hdri_dir / f"{name}.exr")
    return cv2.resize(image, SIZE, interpolation=cv2.INTER_AREA)


def consecutive_differences(frames: list[np.ndarray]) -> np.ndarray:
    """d[t] = mean |frame(t+1) − frame(t)| of the tone-mapped frames; d[T−1] is last→first."""
    shown = [to_display_uint8(f).astype(np.float32) for f in frames]
    return np.array(
        [np.abs(shown[(t + 1) % len(shown)] - shown[t]).mean() for t in range(len(shown))]
    )


def loop_ratio(frames: list[np.ndarray]) -> float:
    """The last→first difference over the mean of its two neighbouring differences."""
    d = consecutive_differences(frames)
    return float(d[-1] / ((d[-2] + d[0]) / 2))


def seam_rank(frame: np.ndarray) -> float:
    """Percentile of the u=0/1 seam's column difference among the interior ones."""
    shown = to_display_uint8(frame).astype(np.float32)
    interior = np.abs(np.diff(shown, axis=1)).mean(axis=(0, 2))
    seam = np.abs(shown[:, 0] - shown[:, -1]).mean()
    return float((interior < seam).mean() * 100)


@pytest.fixture(scope="module")
def loops(hdri_dir):
    """name → (image, frames) for four HDRIs of different kinds, seed 0."""
    out = {}
    for name in ("forest", "night", "sunset", "city"):
        image = reduced(hdri_dir, name)
        volume = ProceduralPrior().spectral_volume(image, mask=None, seed=0)
        out[name] = (image, render_loop(image, volume, FRAMES, fps=FPS))
    return out


@pytest.mark.parametrize("name", ["forest", "night", "sunset", "city"])
def test_loop_is_seamless_last_to_first_like_any_other_step(loops, name):
    image, frames = loops[name]
    assert len(frames) == FRAMES
    d = consecutive_differences(frames)
    # City's moving part is mostly a flat white sky flowing one way: small, real changes.
    assert d.min() > 0.03, "the panorama must actually move"
    ratio = loop_ratio(frames)
    assert 0.8 <= ratio <= 1.25, (name, ratio, d.round(3))


def test_a_cut_loop_fails_the_loop_check(hdri_dir):
    """Control: the same motion cut short (a jump at the loop point) is caught."""
    image = reduced(hdri_dir, "forest")
    volume = ProceduralPrior().spectral_volume(image, mask=None, seed=0)
    renderer = LoopRenderer(image, volume, FRAMES + 6, fps=FPS)
    cut = [renderer.frame(t) for t in range(FRAMES)]
    assert loop_ratio(cut) > 1.25


@pytest.mark.parametrize("name", ["forest", "night", "sunset", "city"])
def test_seam_column_difference_is_like_an_interior_one(loops, name):
    image, frames = loops[name]
    input_rank = seam_rank(image)
    for t in (0, FRAMES // 3, FRAMES - 1):
        rank = seam_rank(frames[t])
        assert rank <= max(99.0, input_rank), (name, t, rank)


def test_a_broken_seam_fails_the_seam_check(loops):
    """Control: half a panorama shifted by a few rows shows at the seam."""
    _, frames = loops["forest"]
    frame = frames[0]
    half = frame.shape[1] // 2
    broken = np.concatenate([frame[:, :half], np.roll(frame[:, half:], 6, axis=0)], axis=1)
    assert seam_rank(broken) > 99.0


def test_black_mask_pixels_are_bit_identical_in_every_frame(hdri_dir):
    image = reduced(hdri_dir, "sunset")
    mask = np.zeros(image.shape[:2], np.float32)
    mask[:50] = 1.0  # the sky moves...
    mask[10:30, 100:160] = 0.0  # ...except a black hole in it
    mask[80:, 40:200] = 0.5  # grey: half motion
    volume = ProceduralPrior().spectral_volume(image, mask=mask, seed=3)
    frames = render_loop(image, volume, FRAMES, strength=3.0, fps=FPS)
    still = mask == 0
    moved = np.zeros(image.shape[:2], bool)
    for frame in frames:
        np.testing.assert_array_equal(frame[still], image[still])
        moved |= np.any(frame != image, axis=2)
    assert moved[:10].mean() > 0.5 and moved[80:, 40:200].mean() > 0.2


def test_eight_bit_input_keeps_its_kind_and_its_still_pixels(hdri_dir):
    image = to_display_uint8(reduced(hdri_dir, "forest"))
    volume = ProceduralPrior().spectral_volume(image, mask=None, seed=0)
    frames = render_loop(image, volume, 8, fps=FPS)
    still = volume.amplitude == 0
    assert still.mean() > 0.1
    for frame in frames:
        assert frame.dtype == np.uint8
        np.testing.assert_array_equal(frame[still], image[still])
    assert any(np.any(f != image) for f in frames)


@pytest.mark.parametrize("kind", ["float32", "uint8"])
def test_strength_zero_reproduces_the_input(hdri_dir, kind):
    image = reduced(hdri_dir, "forest")
    if kind == "uint8":
        image = to_display_uint8(image)
    volume = ProceduralPrior().spectral_volume(image, mask=None, seed=0)
    for frame in render_loop(image, volume, 6, strength=0.0):
        np.testing.assert_array_equal(frame, image)


def test_same_seed_same_frames_other_seed_other_frames(hdri_dir):
    image = reduced(hdri_dir, "night")
    prior = ProceduralPrior()
    first = render_loop(image, prior.spectral_volume(image, mask=None, seed=7), 6, fps=2.0)
    again = render_loop(image, prior.spectral_volume(image, mask=None, seed=7), 6, fps=2.0)
    other = render_loop(image, prior.spectral_volume(image, mask=None, seed=8), 6, fps=2.0)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, c) for a, c in zip(first, other, strict=True))


def test_hdr_values_above_one_are_kept(loops):
    image, frames = loops["city"]
    assert image.max() > 100
    assert all(frame.dtype == np.float32 and frame.max() > 100 for frame in frames)
    # Splatting is a weighted mean: no frame is brighter than the input anywhere.
    assert max(float(f.max()) for f in frames) <= float(image.max()) * (1 + 1e-5)


def test_native_resolution_loop_and_seam(hdri_dir):
    image = read_image(hdri_dir / "forest.exr")
    assert image.shape == (512, 1024, 3)
    volume = ProceduralPrior().spectral_volume(image, mask=None, seed=0)
    frames = render_loop(image, volume, FRAMES, fps=FPS)
    assert 0.8 <= loop_ratio(frames) <= 1.25
    assert seam_rank(frames[FRAMES // 2]) <= 99.0


def test_cancel_stops_the_job_and_leaves_nothing(tmp_path, hdri_dir):
    from engine.animate.pipeline import animate_panorama
    from engine.media import write_image

    source = write_image(tmp_path / "pano.exr", reduced(hdri_dir, "forest"))
    ctx = JobContext()

    def progress(stage, step, total):
        if step == 3:
            ctx.cancel.cancel()

    ctx.progress = progress
    with pytest.raises(JobCancelled):
        animate_panorama(source, tmp_path / "out", seconds=1, fps=12, ctx=ctx)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pano.exr"]


def test_frames_do_not_depend_on_the_thread_count(hdri_dir):
    image = reduced(hdri_dir, "forest")
    volume = ProceduralPrior().spectral_volume(image, mask=None, seed=0)
    single = render_loop(image, volume, 4, strength=4.0, threads=1)
    for threads in (2, 3):
        many = render_loop(image, volume, 4, strength=4.0, threads=threads)
        for a, b in zip(single, many, strict=True):
            np.testing.assert_array_equal(a, b)
