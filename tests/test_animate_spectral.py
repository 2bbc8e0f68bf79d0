"""Spectral volumes, the procedural prior and the softmax splat kernel, piece by piece."""

from __future__ import annotations

import pickle
from dataclasses import replace

import cv2
import numpy as np
import pytest

from engine.animate.priors import SWAY, ProceduralPrior, kind_coefficients, spherical_noise
from engine.animate.spectral import (
    CYCLES_PER_LOOP,
    K,
    MotionTexture,
    SpectralVolume,
    denormalize,
    load_volume,
    motion_texture,
    normalize,
    save_volume,
    spectral_from_motion,
)
from engine.animate.splat import SoftmaxSplatter, grid_tables, row_bands, upsample_grid
from engine.errors import BadInput
from engine.media import read_image


def random_volume(seed: int = 0, h: int = 8, w: int = 16, size=(16, 32)) -> SpectralVolume:
    rng = np.random.default_rng(seed)
    coefficients = (
        rng.standard_normal((K, 2, h, w)) + 1j * rng.standard_normal((K, 2, h, w))
    ) * 0.01
    amplitude = rng.uniform(0, 1, size).astype(np.float32)
    return SpectralVolume(
        coefficients.astype(np.complex64), np.arange(1, K + 1) / 4.0, amplitude, "test"
    )


# --------------------------------------------------------------------------- spectral volumes


def test_fft_of_the_motion_texture_gives_back_the_frequencies_in_hertz():
    """Frames 0..T-1 are exactly one period: the FFT over them recovers every coefficient,
    at frequencies in hertz (a 4 s loop: 1/4 Hz steps)."""
    volume = random_volume()
    frames = 40  # 4 s at 10 fps: 0.25..4 Hz are 1..16 cycles, all below T/2 = 20
    motion = motion_texture(volume, frames, seconds=4.0)
    coefficients, frequencies = spectral_from_motion(motion, seconds=4.0, k=K + 1)
    np.testing.assert_allclose(frequencies, np.arange(K + 1) / 4.0)
    np.testing.assert_allclose(coefficients[0], 0, atol=1e-6)  # no drift: mean displacement 0
    np.testing.assert_allclose(coefficients[1:], volume.coefficients, atol=2e-6)


def test_motion_is_periodic_and_frame_T_equals_frame_0():
    volume = random_volume(1)
    texture = MotionTexture(volume, 24, seconds=4.0)
    # Evaluate the series at t = T by hand (no modulo): cos/sin of whole turns.
    phase = 2 * np.pi * np.arange(1, K + 1)[:, None, None, None] * (24 / 24)
    at_T = np.real(volume.coefficients.astype(np.complex128) * np.exp(1j * phase)).sum(axis=0)
    at_T_masked = np.real(
        (volume.coefficients[:11] * np.exp(1j * phase[:11])).astype(np.complex128)
    ).sum(axis=0)
    np.testing.assert_allclose(texture.frame(0), at_T_masked, atol=1e-6)
    assert not np.allclose(at_T, at_T_masked)  # frequencies >= T/2 really were dropped
    np.testing.assert_array_equal(texture.frame(24), texture.frame(0))
    np.testing.assert_array_equal(texture.frame(-1), texture.frame(23))


def test_gid_normalisation_round_trips_and_scales_the_95th_percentile_to_one():
    volume = random_volume(2)
    normalised, scales = normalize(volume.coefficients)
    assert normalised.shape == (K, 4, 8, 16) and scales.shape == (K,)
    magnitude = np.abs(volume.coefficients / scales[:, None, None, None]).reshape(K, -1)
    np.testing.assert_allclose(np.percentile(magnitude, 95, axis=1), 1.0, rtol=1e-5)
    assert np.abs(normalised).max() <= np.sqrt(np.abs(magnitude).max()) + 1e-6
    np.testing.assert_allclose(denormalize(normalised, scales), volume.coefficients, atol=1e-7)


def test_npz_round_trip_is_exact(tmp_path):
    volume = random_volume(3)
    flow = np.full((2, 8, 16), 0.01, np.float32)
    kinds = ("sway",) * 8 + ("ripple",) * 8
    volume = replace(volume, flow=flow, kinds=kinds)
    path = save_volume(tmp_path / "m.npz", volume)
    with np.load(path) as data:
        assert int(data["format"]) == 2 and data["frequencies"].dtype == np.float64
    loaded = load_volume(path)
    np.testing.assert_array_equal(loaded.coefficients, volume.coefficients)
    np.testing.assert_array_equal(loaded.frequencies, volume.frequencies)
    np.testing.assert_array_equal(loaded.amplitude, volume.amplitude)
    np.testing.assert_array_equal(loaded.flow, flow)
    assert loaded.prior == "test" and loaded.unit == "hertz" and loaded.kinds == kinds


def test_format_1_files_are_read_as_cycles_per_loop_whatever_the_loop_length(tmp_path):
    """A format-1 file (integer cycles per loop, before hertz) plays the same cycles in a
    2 s and an 8 s loop, and is written back as format 1."""
    volume = random_volume(5)
    path = _npz(
        tmp_path,
        "old.npz",
        format=np.int64(1),
        coefficients_real=volume.coefficients.real,
        coefficients_imag=volume.coefficients.imag,
        frequencies=np.arange(1, K + 1, dtype=np.int64),
        amplitude=volume.amplitude,
    )
    old = load_volume(path)
    assert old.unit == CYCLES_PER_LOOP
    short = MotionTexture(old, 48, seconds=2.0).all_frames()
    long = MotionTexture(old, 48, seconds=8.0).all_frames()
    np.testing.assert_array_equal(short, long)
    with np.load(save_volume(tmp_path / "again.npz", old)) as data:
        assert int(data["format"]) == 1 and data["frequencies"].dtype == np.int64


def test_hertz_play_at_the_nearest_whole_harmonic_and_too_slow_ones_drop_out():
    """0.3 Hz is 0.6 cycles in a 2 s loop (plays 1), 2.4 in 8 s (plays 2); 0.1 Hz rounds
    to 0 cycles in 2 s: left out."""
    volume = random_volume(6)
    freqs = np.array([0.3, 0.1] + [100.0 + i for i in range(K - 2)])
    volume = replace(volume, frequencies=freqs)
    assert volume.loop_cycles(2.0)[:2].tolist() == [1, 0]
    assert volume.loop_cycles(8.0)[:2].tolist() == [2, 1]
    texture = MotionTexture(volume, 48, seconds=2.0)
    assert texture.frequencies.tolist() == [1.0]  # 0.1 Hz dropped, 100+ Hz alias


def _npz(tmp_path, name, **arrays):
    path = tmp_path / name
    with path.open("wb") as fh:
        np.savez(fh, **arrays)
    return path


def test_bad_npz_files_are_refused_naming_the_file(tmp_path):
    good = random_volume(4)
    base = {
        "format": np.int64(1),
        "coefficients_real": good.coefficients.real,
        "coefficients_imag": good.coefficients.imag,
        "frequencies": np.arange(1, K + 1, dtype=np.int64),
        "amplitude": good.amplitude,
    }
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip archive at all")
    pickled = tmp_path / "pickled.npz"
    with pickled.open("wb") as fh:
        np.savez(fh, **{**base, "amplitude": np.array([object()], dtype=object)})
    plain_pickle = tmp_path / "plain.npz"
    plain_pickle.write_bytes(pickle.dumps({"amplitude": good.amplitude}))
    nan = good.coefficients.real.copy()
    nan[0, 0, 0, 0] = np.nan
    cases = {
        garbage: "cannot read",
        pickled: "cannot read",
        plain_pickle: "cannot read",
        tmp_path / "missing.npz": "not found",
        _npz(tmp_path, "nokeys.npz", x=np.zeros(3)): "lacks",
        _npz(tmp_path, "shape.npz", **{**base, "coefficients_imag": np.zeros((2, 2))}): "differ",
        _npz(tmp_path, "nan.npz", **{**base, "coefficients_real": nan}): "NaN",
        _npz(tmp_path, "freq.npz", **{**base, "frequencies": np.zeros(K, np.int64)}): "distinct",
        _npz(
            tmp_path, "hz1.npz", **{**base, "frequencies": np.arange(K) + 0.5}
        ): "integers (cycles per loop)",
        _npz(
            tmp_path, "hz2.npz", **{**base, "format": np.int64(2), "frequencies": nan[:, 0, 0, 0]}
        ): "finite",
        _npz(
            tmp_path, "flow.npz", **{**base, "flow": np.zeros((2, 3, 3), np.float32)}
        ): "flow must have shape",
        _npz(tmp_path, "amp.npz", **{**base, "amplitude": -good.amplitude}): "amplitude",
        _npz(tmp_path, "fmt.npz", **{**base, "format": np.int64(7)}): "format",
        _npz(
            tmp_path, "huge.npz", **{**base, "coefficients_real": np.full_like(nan, 1e30)}
        ): "half turn",
    }
    for path, words in cases.items():
        with pytest.raises(BadInput) as info:
            load_volume(path)
        message = str(info.value)
        assert str(path) in message and words in message, message
        assert "\n" not in message


# --------------------------------------------------------------------------- procedural prior


@pytest.fixture(scope="module")
def forest_small(hdri_dir):
    return cv2.resize(read_image(hdri_dir / "forest.exr"), (256, 128), interpolation=cv2.INTER_AREA)


def test_prior_is_deterministic_per_seed_and_respects_the_mask(forest_small):
    prior = ProceduralPrior()
    a = prior.spectral_volume(forest_small, mask=None, seed=5)
    b = prior.spectral_volume(forest_small, mask=None, seed=5)
    c = prior.spectral_volume(forest_small, mask=None, seed=6)
    np.testing.assert_array_equal(a.coefficients, b.coefficients)
    assert not np.allclose(a.coefficients, c.coefficients)
    assert a.coefficients.shape == (K, 2, 128, 256) and a.amplitude.shape == (128, 256)
    # The automatic estimate moves the canopy and the sky and keeps the path still.
    canopy, path = a.amplitude[20:50].mean(), a.amplitude[110:].mean()
    assert canopy > 0.3 and path < 0.1, (canopy, path)
    mask = np.zeros((128, 256), np.float32)
    mask[:40] = 1.0
    masked = prior.spectral_volume(forest_small, mask=mask, seed=5)
    np.testing.assert_array_equal(masked.amplitude, mask)


def test_motion_power_falls_with_frequency():
    rng = np.random.default_rng(0)
    fields = kind_coefficients(SWAY, 32, 64, rng)
    power = (np.abs(fields) ** 2).mean(axis=(1, 2, 3))
    assert np.all(np.diff(power) < 0)
    # ~exponential: log-power against frequency (hertz) is a line of slope -1/decay.
    slope = np.polyfit(np.asarray(SWAY.hertz), np.log(power), 1)[0]
    assert abs(slope * SWAY.decay + 1) < 0.2, slope
    # Total RMS displacement over the loop is the kind's rms.
    rms = np.sqrt((np.abs(fields) ** 2).sum(axis=(0, 1)).mean() / 2)
    assert abs(rms / SWAY.rms - 1) < 0.1


def test_random_fields_are_coherent_across_the_seam():
    field = spherical_noise(np.random.default_rng(1), 64, 128, sigma=4.0)
    interior = np.abs(np.diff(field, axis=1)).mean(axis=0)
    seam = np.abs(field[:, 0] - field[:, -1]).mean()
    assert seam <= np.percentile(interior, 99), (seam, np.percentile(interior, 99))
    # ...and a plain, non-wrapping blur would not be (the metric can fail).
    noise = np.random.default_rng(1).standard_normal((64, 128)).astype(np.float32)
    plain = cv2.GaussianBlur(noise, (0, 0), 4.0)
    plain /= plain.std()
    plain_interior = np.abs(np.diff(plain, axis=1)).mean(axis=0)
    assert np.abs(plain[:, 0] - plain[:, -1]).mean() > np.percentile(plain_interior, 99)


# --------------------------------------------------------------------------- splat kernel


def test_grid_tables_wrap_in_longitude_and_clamp_in_latitude():
    x0, x1, fx = grid_tables(8, 4, wrap=True)
    assert x0[0] == 3 and x1[0] == 0 and fx[0] == pytest.approx(0.75)
    y0, y1, fy = grid_tables(8, 4, wrap=False)
    assert y0[0] == 0 and fy[0] == 0 and y1[-1] == 3 and fy[-1] == 1
    field = np.arange(8, dtype=np.float32).reshape(2, 4)
    up = upsample_grid(field, 4, 8)
    # Column 0's centre lies a quarter cell past coarse column 3 (the seam wraps); the
    # first and last rows lie beyond the coarse rows' centres (clamped).
    np.testing.assert_allclose(up[[0, -1], 0], (3 * field[:, 0] + field[:, 3]) / 4)


def _one_pixel_splat(row, col, d_col, d_row, height=16, width=32):
    """A grey panorama with one bright pixel; only that pixel moves (the rest barely)."""
    image = np.ones((height, width, 3), np.float32)
    image[row, col] = 101.0
    motion = np.zeros((2, height // 4, width // 4), np.float32)
    motion[0], motion[1] = d_col, d_row
    amplitude = np.full((height, width), 1e-6, np.float32)
    amplitude[row, col] = 1.0
    mean_motion = np.full(motion.shape[1:], np.hypot(d_col, d_row), np.float32)
    splatter = SoftmaxSplatter(image, amplitude, mean_motion, abs(d_row))
    return splatter.render(motion)


def test_a_pixel_moved_over_the_pole_lands_half_a_turn_away():
    # Row 0 moved up 1.5 rows: target row −1.5 lies between rows −2 and −1, which are
    # rows 1 and 0 turned half a revolution (column 3 + W/2 = 19).
    out = _one_pixel_splat(0, 3, 0.0, -1.5)
    assert out[0, 19, 0] > 90 and out[1, 19, 0] > 90
    assert out[0, 20, 0] == pytest.approx(1.0) and out[2, 19, 0] == pytest.approx(1.0)
    # Its own place became a hole, filled from the grey behind it.
    assert out[0, 3, 0] == pytest.approx(1.0, abs=1e-3)


def test_a_pixel_moved_across_the_seam_wraps_to_the_first_columns():
    out = _one_pixel_splat(8, 31, 1.5, 0.0)
    assert out[8, 0, 0] > 90 and out[8, 1, 0] > 90
    assert out[8, 2, 0] == pytest.approx(1.0) and out[8, 30, 0] == pytest.approx(1.0)
    assert out[8, 31, 0] == pytest.approx(1.0, abs=1e-3)


def test_zero_motion_splats_every_pixel_onto_itself_exactly(forest_small):
    amplitude = np.ones(forest_small.shape[:2], np.float32)
    motion = np.zeros((2, 64, 128), np.float32)
    splatter = SoftmaxSplatter(forest_small, amplitude, np.zeros((64, 128), np.float32), 0.0)
    np.testing.assert_array_equal(splatter.render(motion), forest_small)


def test_row_bands_are_tall_enough_for_the_motion():
    edges = row_bands(1024, 10.0, 8)
    assert edges[0] == 0 and edges[-1] == 1024
    assert np.diff(edges).min() >= 2 * (10 + 2)
    assert len(row_bands(64, 100.0, 8)) == 2  # one band when motion is too large


def test_huge_displacements_stay_inside_the_panorama():
    out = _one_pixel_splat(8, 5, -3.3e4, 2.2e5)
    assert np.all(np.isfinite(out)) and out.max() <= 101.0
    assert np.isclose(out[..., 0], 101.0).sum() <= 4  # the bright pixel landed somewhere once


# --------------------------------------------------------------------------- physical time


def loop_speed(volume: SpectralVolume, seconds: float, fps: float = 24.0) -> tuple[float, float]:
    """(mean |D(t+1) − D(t)| over the loop and the moving grid pixels, in radians per frame;
    mean cosine between consecutive frame-to-frame changes: 1 = smooth, < 0.5 = shaking)."""
    frames = round(seconds * fps)
    motion = MotionTexture(volume, frames, seconds=seconds).all_frames()
    step = np.diff(np.concatenate([motion, motion[:1]]), axis=0)  # includes last → first
    moving = np.hypot(step[:, 0], step[:, 1]).mean(axis=0) > 0
    speed = float(np.hypot(step[:, 0], step[:, 1])[:, moving].mean())
    a, b = step.reshape(frames, -1), np.roll(step, -1, axis=0).reshape(frames, -1)
    cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return speed, float(cosine.mean())


@pytest.fixture(scope="module")
def courtyard_volume(hdri_dir):
    """The procedural prior's motion of a held-out HDRI (not the forest the kinds were
    tuned on)."""
    image = cv2.resize(
        read_image(hdri_dir / "courtyard.exr"), (256, 128), interpolation=cv2.INTER_AREA
    )
    return ProceduralPrior().spectral_volume(image, mask=None, seed=3)


def test_two_four_six_and_eight_second_loops_move_at_the_same_speed(courtyard_volume):
    """Behaviour: frequencies in hertz, played at the nearest whole harmonics, give the same
    frame-to-frame speed (±30 %) at every loop length, and smooth (coherent) motion even
    in a 2 s loop (cycles per loop made a 2 s loop shake: cosine 0.12)."""
    speeds = {s: loop_speed(courtyard_volume, s) for s in (2.0, 4.0, 6.0, 8.0)}
    reference = speeds[4.0][0]
    for seconds, (speed, cosine) in speeds.items():
        assert 0.7 <= speed / reference <= 1.3, (seconds, speed / reference)
        assert cosine > 0.9, (seconds, cosine)


def test_cycles_per_loop_would_not_keep_the_speed(courtyard_volume):
    """Control: the same coefficients read as format-1 cycles per loop move twice as fast
    per frame in a 2 s loop as in a 4 s one — the check above can fail."""
    old = replace(
        courtyard_volume,
        frequencies=np.arange(1, len(courtyard_volume.frequencies) + 1, dtype=np.float64),
        unit=CYCLES_PER_LOOP,
    )
    assert loop_speed(old, 2.0)[0] / loop_speed(old, 4.0)[0] > 1.6
