"""Issue 11 on a held-out HDRI (sunset, not the forest the motion kinds were tuned on):
sharp frames, physical-time speed, one-way drift that still loops, painted motion.

Every test here checks behaviour on rendered frames (no model involved); each has a
control showing the measure can fail. Sunset is reduced to 512×256 (INTER_AREA).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.animate import warp
from engine.animate.measure import (
    detail_energy,
    grey,
    mean_shift,
    moving_region,
    sharpness_ratio,
)
from engine.animate.pipeline import LoopRenderer, loop_motion_statistics
from engine.animate.priors import Drift, ProceduralPrior, dome_flow
from engine.animate.splat import SoftmaxSplatter
from engine.animate.warp import detail_gains, gain_field, image_gains
from engine.colour import DisplayTransform
from engine.media import read_image

WIDTH, HEIGHT = 512, 256


@pytest.fixture(scope="module")
def sunset(hdri_dir) -> np.ndarray:
    image = read_image(hdri_dir / "sunset.exr")
    return cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def sunrise_small(hdri_dir) -> np.ndarray:
    image = read_image(hdri_dir / "sunrise.exr")
    return cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)


def painted(red: float = 0.0, green: float = 0.0, blue: float = 0.0, rows: float = 0.45):
    """A motion map painting the upper ``rows`` of the panorama; black (still) below."""
    motion_map = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    motion_map[: int(HEIGHT * rows)] = (red, green, blue)
    return motion_map


@pytest.fixture(scope="module")
def swaying(sunset):
    """(volume, renderer) of the upper region swaying (green), a 2 s loop at 24 fps."""
    volume = ProceduralPrior().spectral_volume(
        sunset, mask=None, seed=1, motion_map=painted(green=1.0)
    )
    return volume, LoopRenderer(sunset, volume, 48, fps=24)


def test_every_frame_keeps_the_sources_detail_where_it_moves(sunset, swaying):
    """Behaviour: the Laplacian variance of the moving pixels stays ≥ 0.9 of the source's on
    every checked frame, frame 0 included (its displacement is not 0). Control: the former
    forward softmax splat of the same motion keeps about half."""
    volume, renderer = swaying
    region = moving_region(volume.amplitude)
    assert region.mean() > 0.3
    checked = range(0, 48, 6)
    ours = [sharpness_ratio(sunset, renderer.frame(t), region) for t in checked]
    assert min(ours) >= 0.9, np.round(ours, 3)
    mean_motion, max_row_shift = loop_motion_statistics(renderer.texture)
    splat = SoftmaxSplatter(sunset, volume.amplitude, mean_motion, max_row_shift)
    before = [
        sharpness_ratio(sunset, splat.render(renderer.texture.frame(t)), region) for t in checked
    ]
    assert max(before) < 0.7, np.round(before, 3)


def test_painted_black_stays_bit_identical_hdr_kept_loop_exact(sunset, swaying):
    volume, renderer = swaying
    still = volume.amplitude == 0
    assert still[int(HEIGHT * 0.45) :].all()
    frame = renderer.frame(7)
    np.testing.assert_array_equal(frame[still], sunset[still])
    assert not np.array_equal(frame[~still], sunset[~still])
    assert float(frame.max()) > 1.0  # HDR above 1 survives
    np.testing.assert_array_equal(renderer.frame(48), renderer.frame(0))


def flow_speed(frames: dict[int, np.ndarray], pairs: list[int], region: np.ndarray) -> float:
    """Mean optical-flow magnitude (pixels per frame, Farneback) over ``region``."""
    speeds = []
    for t in pairs:
        a, b = (grey(frames[t]).astype(np.uint8), grey(frames[t + 1]).astype(np.uint8))
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        speeds.append(np.hypot(flow[..., 0], flow[..., 1])[region].mean())
    return float(np.mean(speeds))


def test_two_and_six_second_loops_move_at_the_same_speed(sunset):
    """Behaviour: at 24 fps, a 2 s and a 6 s loop of the same motion move their pixels by
    the same optical flow per frame (±30 %). Control: the same coefficients read as
    cycles per loop (the former convention) make the 2 s loop about three times faster."""
    volume = ProceduralPrior().spectral_volume(
        sunset, mask=None, seed=2, motion_map=painted(green=1.0, blue=0.5)
    )
    region = moving_region(volume.amplitude)

    def speed(vol, seconds: float) -> float:
        frames = round(24 * seconds)
        renderer = LoopRenderer(sunset, vol, frames, fps=24, strength=3.0)
        pairs = [int(t) for t in np.linspace(0, frames - 2, 10)]
        shown = {t: renderer.frame(t) for p in pairs for t in (p, p + 1)}
        return flow_speed(shown, pairs, region)

    short, long = speed(volume, 2.0), speed(volume, 6.0)
    assert 0.7 <= short / long <= 1.3, (short, long)
    per_loop = volume.__class__(
        volume.coefficients,
        np.arange(1, len(volume.frequencies) + 1, dtype=np.float64),
        volume.amplitude,
        unit="cycles_per_loop",
    )
    assert speed(per_loop, 2.0) / speed(per_loop, 6.0) > 2.0


@pytest.fixture(scope="module")
def drifting(sunset):
    """Frames of a 2 s loop with the sky painted red (one-way drift toward +X, 6°/s)."""
    volume = ProceduralPrior().spectral_volume(
        sunset, mask=None, seed=1, motion_map=painted(red=1.0, rows=0.4), drift=Drift(0.0, 6.0)
    )
    renderer = LoopRenderer(sunset, volume, 48, fps=24)
    return volume, renderer, [renderer.frame(t) for t in range(48)]


SKY = (slice(int(HEIGHT * 0.12), int(HEIGHT * 0.33)), slice(0, WIDTH))


def test_painted_red_drifts_one_way_and_the_loop_closes(drifting):
    """Behaviour: consecutive frames (last → first included) shift the sky the same way
    ≥ 90 % of the time, and frame T is frame 0 bit for bit."""
    volume, renderer, frames = drifting
    shifts = np.array([mean_shift(frames[t], frames[(t + 1) % 48], SKY) for t in range(48)])
    overall = shifts.mean(axis=0)
    assert np.hypot(*overall) > 0.02
    assert ((shifts @ overall) > 0).mean() >= 0.9, shifts.round(3)
    np.testing.assert_array_equal(renderer.frame(48), frames[0])
    # Control: an oscillating sky (no one-way flow) does not pass the same check.
    wobble = ProceduralPrior().spectral_volume(
        renderer.warper.source, mask=None, seed=1, motion_map=painted(green=1.0, rows=0.4)
    )
    other = LoopRenderer(renderer.warper.source, wobble, 48, fps=24, strength=3.0)
    shown = [other.frame(t) for t in range(48)]
    back = np.array([mean_shift(shown[t], shown[(t + 1) % 48], SKY) for t in range(48)])
    assert ((back @ back.mean(axis=0)) > 0).mean() < 0.9


def test_drift_does_not_pulse(drifting):
    """Behaviour: the detail energy of the drifting sky varies ≤ 10 % over the loop
    (a plain two-phase cross-fade varies about 45 %)."""
    volume, renderer, frames = drifting
    region = moving_region(volume.amplitude)
    energy = np.array([detail_energy(f, region) for f in frames])
    assert (energy.max() - energy.min()) / energy.mean() <= 0.10, energy.round(1)


def test_the_drift_direction_is_a_heading_in_blenders_world():
    """Heading 0 = toward +X: overhead the sky moves toward +X (the centre column, rows
    toward the horizon there), downwind clouds recede to the horizon (+row), upwind
    they rise from it; 180° reverses everything."""
    toward_x = dome_flow(0.0, 1.0, 64, 128)
    centre, seam = 64, 0  # centre column faces +X, the seam faces −X
    mid = 16  # 45° elevation
    assert toward_x[1, mid, centre] > 0 and toward_x[1, mid, seam] < 0
    np.testing.assert_allclose(dome_flow(180.0, 1.0, 64, 128), -toward_x, atol=1e-6)
    # Toward +Y (u = 0.25, column 32): clouds there recede, the +X ones drift sideways.
    toward_y = dome_flow(90.0, 1.0, 64, 128)
    assert toward_y[1, mid, 32] > 0 and abs(toward_y[0, mid, centre]) > 0


# --------------------------------------------------------------------------- sun and drift


def synthetic_sun_sky(seed: int = 3) -> np.ndarray:
    """A 512×256 HDR panorama: blue sky with clouds at four scales (down to single
    pixels), a sun disc of 4 px radius at 30° elevation worth 8000 with a glow, fine
    grass below the horizon."""
    rng = np.random.default_rng(seed)
    rows = (np.arange(HEIGHT, dtype=np.float32) + 0.5) / HEIGHT
    sky = np.stack([0.25 + 0.5 * rows, 0.45 + 0.4 * rows, 0.9 + 0 * rows], -1)[:, None, :]
    clouds = np.zeros((HEIGHT, WIDTH), np.float32)
    for scale, weight in [(32, 0.5), (8, 0.3), (2, 0.2), (1, 0.15)]:
        noise = rng.standard_normal((HEIGHT // scale + 2, WIDTH // scale + 2)).astype(np.float32)
        size = (WIDTH + 2 * scale, HEIGHT + 2 * scale)
        big = cv2.resize(noise, size, interpolation=cv2.INTER_CUBIC)
        clouds += weight * big[scale : scale + HEIGHT, scale : scale + WIDTH]
    cover = np.clip(clouds, 0.0, None)[..., None]
    image = sky * (1 - 0.5 * np.clip(cover, 0, 1)) + 1.5 * cover
    grass = 0.05 + 0.03 * rng.standard_normal((HEIGHT, WIDTH, 1)).astype(np.float32)
    ground = rows[:, None, None] > 0.5
    image = np.where(ground, grass * np.array([0.6, 1.0, 0.3], np.float32), image)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    distance2 = (yy - HEIGHT / 3) ** 2 + (xx - WIDTH / 2) ** 2
    image = image + ~ground * 3.0 * np.exp(-distance2 / (2 * 12.0**2))[..., None]
    image[distance2 <= 16.0] = (8000.0, 7000.0, 6000.0)
    return np.ascontiguousarray(image, dtype=np.float32)


@pytest.fixture(scope="module")
def agx(blender_ocio_config) -> DisplayTransform:
    if blender_ocio_config is None:
        pytest.skip("Blender's OCIO config is not installed (pip install '.[test]')")
    return DisplayTransform("AgX", 0.0, blender_ocio_config)


def sharpness_with_and_without_gains(image, volume, checked, views):
    """Sharpness ratios of the checked frames per view, then again with the detail gains
    switched off (the plain B-spline: the control)."""
    renderer = LoopRenderer(image, volume, 48, fps=24)
    region = moving_region(volume.amplitude)
    frames = [renderer.frame(t) for t in checked]
    ours = {name: [sharpness_ratio(image, f, region, v) for f in frames] for name, v in views}
    renderer.warper.gains[:] = 1.0
    plain = [sharpness_ratio(image, renderer.frame(t), region) for t in checked]
    return region, ours, plain


def test_a_sun_in_the_moving_sky_keeps_the_detail(sunrise_small, agx):
    """Behaviour, held-out *sunrise*, automatic motion: its moving region holds the sun's
    HDR glow (the disc itself, 10 px away, is estimated still) and drifts one way there,
    and the fine grass sways. The sharpness ratio is ≥ 0.9 on every checked frame,
    tone-mapped as Standard and as AgX. Control: without the detail gains (the plain
    B-spline) the grass loses about a fifth of its detail (≈ 0.78)."""
    image = sunrise_small
    volume = ProceduralPrior().spectral_volume(image, mask=None, seed=1)
    region, ours, plain = sharpness_with_and_without_gains(
        image, volume, range(0, 48, 6), [("Standard", None), ("AgX", agx)]
    )
    luminance = image @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    assert luminance[region].max() > 3.0 and volume.flow is not None
    for view, ratios in ours.items():
        assert min(ratios) >= 0.9, (view, np.round(ratios, 3))
    assert max(plain) < 0.85, np.round(plain, 3)


def test_a_drifting_sky_with_an_hdr_sun_disc_keeps_the_detail(agx):
    """Behaviour, synthetic HDR sky (sun disc of 8000 in the painted, drifting sky, 6°/s):
    every checked frame keeps ≥ 0.9 of the moving region's detail (Standard and AgX)
    while the phases cross-fade; the sun stays HDR and the loop exact. Control: without
    the detail gains it is about 0.78."""
    image = synthetic_sun_sky()
    red = painted(red=1.0, rows=0.45)
    volume = ProceduralPrior().spectral_volume(
        image, mask=None, seed=1, motion_map=red, drift=Drift(0.0, 6.0)
    )
    region, ours, plain = sharpness_with_and_without_gains(
        image, volume, range(0, 48, 6), [("Standard", None), ("AgX", agx)]
    )
    assert region[HEIGHT // 3, WIDTH // 2]  # the sun moves
    for view, ratios in ours.items():
        assert min(ratios) >= 0.9, (view, np.round(ratios, 3))
    assert max(plain) < 0.85, np.round(plain, 3)
    renderer = LoopRenderer(image, volume, 48, fps=24)
    first = renderer.frame(0)
    assert float(first.max()) > 1000.0
    np.testing.assert_array_equal(renderer.frame(48), first)


def sharp_bundled_loop(path, agx):
    """A bundled HDRI at its own 1024×512 with its automatic motion, a 4-s loop at 24 fps:
    asserts every 8th frame keeps ≥ 0.9 of the moving region's detail as Standard and as
    AgX show it; returns (image, renderer, moving region, checked frame numbers)."""
    image = read_image(path)
    assert image.shape == (512, 1024, 3)
    volume = ProceduralPrior().spectral_volume(image, mask=None, seed=1)
    renderer = LoopRenderer(image, volume, 96, fps=24)
    region = moving_region(volume.amplitude)
    checked = range(0, 96, 8)
    frames = [renderer.frame(t) for t in checked]
    for name, view in [("Standard", None), ("AgX", agx)]:
        ratios = [sharpness_ratio(image, f, region, view) for f in frames]
        assert min(ratios) >= 0.9, (path.stem, name, np.round(ratios, 3))
    return image, renderer, region, checked


def test_a_small_moving_region_among_other_detail_keeps_its_detail(hdri_dir, agx):
    """Behaviour, held-out *interior* at its own 1024×512: the automatic motion moves only
    about 4 % of it (the ceiling's glow drifts, a painting and a door sway), among still
    content of quite other detail. Every 8th frame of a 4-s loop keeps ≥ 0.9 of the moving
    region's detail, tone-mapped as Standard and as AgX, since the detail gains are
    measured per tile on the tile's own moving pixels. Control: one gain table for the
    whole image (the former gains, measured on the probe tiles of the smooth ceiling)
    keeps about 0.89 on some frame, below the bar."""
    image, renderer, region, checked = sharp_bundled_loop(hdri_dir / "interior.exr", agx)
    assert 0.02 < region.mean() < 0.08
    warper = renderer.warper
    single = image_gains(
        warper.coefficients, warper.base, warper.near_low, warper.near_high, warper.amplitude > 0
    )
    warper.gains[:] = single
    former = [sharpness_ratio(image, renderer.frame(t), region) for t in checked]
    assert min(former) < 0.9, np.round(former, 3)


def test_the_gains_checked_on_real_frames_keep_the_detail_next_to_a_bright_sky(hdri_dir, agx):
    """Behaviour, held-out *courtyard* at its own 1024×512: palm fronds sway against a
    sky far brighter than 1, where the cubic's overshoot (limited next to HDR values)
    takes detail that the gains' static half-pixel shifts do not see, and Standard
    clips the sky flat. The gains are checked on three real frames of the loop at
    set-up and raised per tile, never lowered: every 8th frame of the 4-s loop then
    keeps ≥ 0.9 of the moving region's detail, as Standard and as AgX show it.
    Control: the gains as estimated before that check keep about 0.8 on some frame."""
    image, renderer, region, checked = sharp_bundled_loop(hdri_dir / "courtyard.exr", agx)
    warper = renderer.warper
    estimate = detail_gains(
        warper.coefficients, warper.base, warper.near_low, warper.near_high, warper.amplitude > 0
    )
    assert np.all(warper.tile_tables >= estimate) and np.any(warper.tile_tables > estimate)
    warper.gains[:] = gain_field(estimate, *image.shape[:2])
    before = [sharpness_ratio(image, renderer.frame(t), region) for t in checked]
    assert min(before) < 0.85, np.round(before, 3)


def swaying_lamp_frames() -> list[np.ndarray]:
    """A 512×256 grey wall (0.1) with a lamp bar worth 200 in its swaying upper part:
    every 6th frame of a 48-frame loop."""
    image = np.full((HEIGHT, WIDTH, 3), 0.1, np.float32)
    image[60:64, 200:300] = (200.0, 190.0, 170.0)
    volume = ProceduralPrior().spectral_volume(
        image, mask=None, seed=1, motion_map=painted(green=1.0)
    )
    renderer = LoopRenderer(image, volume, 48, fps=24)
    return [renderer.frame(t) for t in range(0, 48, 6)]


def stray_pixels_round_a_lamp() -> list[int]:
    """Per checked frame of :func:`swaying_lamp_frames`, the wall pixels more than 3 px
    from the lamp's moved position whose level is off the wall's by more than 0.02."""
    counts = []
    for frame in swaying_lamp_frames():
        level = frame.mean(axis=2)
        lamp = (level > 50).astype(np.uint8)
        near = cv2.dilate(lamp, np.ones((7, 7), np.uint8)) > 0
        counts.append(int((~near & (np.abs(level - 0.1) > 0.02)).sum()))
    return counts


def test_a_lamp_in_the_moving_region_leaves_no_lines_pixels_away(monkeypatch):
    """Behaviour: the cubic samples only the displayable part of an HDR image (up to a
    knee tied to the darkest level nearby) and the excess above it (a lamp worth 2000×
    the wall) moves bilinearly, so a swaying lamp leaves the wall untouched beyond 3 px
    in every checked frame (the bundled *studio*'s strip light showed dark and bright
    lines before; its sharpness ratio fell from 2.45 to 1.18). Control: with the knee
    out of reach (every value cubic) about 500 wall pixels per frame are off."""
    assert max(stray_pixels_round_a_lamp()) == 0
    monkeypatch.setattr(warp, "HDR_KNEE", 1e9)
    assert min(stray_pixels_round_a_lamp()) > 200


def test_a_lamp_has_no_dark_line_along_its_edge(monkeypatch):
    """Behaviour: within 4 px of HDR excess a moving sample's displayable value stays
    within its 3×3 source pixels' range (``_add_excess_rows``), so the wall right next
    to a swaying lamp is never darker than the wall: the darkest wall channel in every
    checked frame is within 1 % of 0.1 (before this, 0.017 along the edge: the dark line
    round the bundled *studio*'s strip light and the black specks in *courtyard*'s
    foliage against the sky). Control: with the knee out of reach (every value cubic,
    no excess pass) the edge is darker than the wall by over 30 %."""
    darkest = [float(frame.min()) for frame in swaying_lamp_frames()]
    assert min(darkest) >= 0.099, np.round(darkest, 4)
    monkeypatch.setattr(warp, "HDR_KNEE", 1e9)
    assert max(float(frame.min()) for frame in swaying_lamp_frames()) < 0.07
