"""``engine motion``: motion learned from a clip reproduces the clip's movement.

Behaviour, not plumbing: a synthetic clip with known motion (a textured band moving
horizontally by a sum of two sinusoids, everything else still) goes through the real
command line — ``engine motion`` then ``engine animate --motion`` — and the rendered loop
is measured against the clip: the band's displacement against output frame 0 matches the
clip's against its frame 0 within 0.5 px RMS, and the still part is bit-identical.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO

from engine.animate.clip import analysis_gray, changing_pixels, clip_spectrum, trajectories
from engine.animate.spectral import HERTZ, load_volume
from engine.media import list_frames, read_image, read_manifest

WIDTH, HEIGHT, FPS = 256, 128, 12
BAND = slice(48, 80)
#: Rows measured: the band's interior (its edges border still pixels).
MEASURED = slice(52, 76)
#: The band's law, pixels: two sinusoids of 0.25 and 0.75 Hz (whole cycles in 4 s).
AMPLITUDES, FREQUENCIES, PHASES = (3.0, 1.5), (0.25, 0.75), (0.0, 1.0)


def band_shift(seconds: np.ndarray | float) -> np.ndarray:
    t = np.asarray(seconds, dtype=np.float64)
    return sum(
        a * np.sin(2 * np.pi * f * t + p)
        for a, f, p in zip(AMPLITUDES, FREQUENCIES, PHASES, strict=True)
    )


def texture(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """A smooth colour texture, periodic over the panorama's width (it wraps the seam)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((*np.broadcast(x, y).shape, 3))
    for _ in range(12):
        kx, ky = rng.integers(1, 24), rng.uniform(0.02, 0.4)
        phases = rng.uniform(0, 2 * np.pi, 3)
        for c in range(3):
            image[..., c] += np.sin(2 * np.pi * kx * x / WIDTH + ky * y + phases[c])
    return np.clip(128 + 14 * image, 0, 255)


def band_clip(frames: int) -> list[np.ndarray]:
    """The clip: a still texture with a band (rows 48–79) sliding by :func:`band_shift`."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    still = texture(xx, yy, seed=1)
    out = []
    for i in range(frames):
        frame = still.copy()
        frame[BAND] = texture(xx[BAND] - band_shift(i / FPS), yy[BAND], seed=2)
        out.append(np.round(frame).astype(np.uint8))
    return out


def write_clip(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"clip_{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def run_cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def horizontal_shift(reference: np.ndarray, moved: np.ndarray) -> float:
    """Sub-pixel horizontal shift of ``moved``'s band against ``reference``'s, pixels.

    The shift maximising the correlation of the Fourier-shifted reference band with the
    moved one (the band wraps around the panorama, so the shift is exact): by Parseval,
    one sum over frequencies per candidate; a coarse scan, then a fine one.
    """
    a = np.fft.fft(reference[MEASURED].astype(np.float64), axis=1)
    b = np.fft.fft(moved[MEASURED].astype(np.float64), axis=1)
    cross = (a * np.conj(b)).sum(axis=(0, 2))
    omega = 2 * np.pi * np.fft.fftfreq(cross.shape[0])

    def correlation(shifts: np.ndarray) -> np.ndarray:
        return (cross[None] * np.exp(-1j * omega[None] * shifts[:, None])).real.sum(axis=1)

    coarse = np.arange(-8.0, 8.0001, 0.1)
    best = coarse[np.argmax(correlation(coarse))]
    fine = np.arange(best - 0.1, best + 0.1001, 0.002)
    return float(fine[np.argmax(correlation(fine))])


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    """8 s at 12 fps: the held-out clip (its first frame is the still to animate)."""
    return write_clip(tmp_path_factory.mktemp("clip") / "frames", band_clip(8 * FPS))


@pytest.fixture(scope="module")
def learned(clip_folder, tmp_path_factory) -> dict:
    """``engine motion CLIP --out m.npz --fps 12`` then ``engine animate STILL --motion``."""
    tmp = tmp_path_factory.mktemp("learned")
    motion = tmp / "m.npz"
    result = run_cli("motion", clip_folder, "--out", motion, "--fps", FPS)
    assert result.returncode == 0, result.stderr
    still = sorted(clip_folder.iterdir())[0]
    loop = tmp / "loop"
    result = run_cli("animate", still, "--motion", motion, "--seconds", 4, "--fps", FPS,
                     "--out", loop)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return {"motion": motion, "loop": loop, "still": still, "clip": clip_folder}


def test_trajectories_and_spectrum_of_the_band():
    """The stages alone: trajectories from frame 0 within a tenth of a pixel, and the
    clip's own two frequencies (hertz) and amplitudes among the 16 kept harmonics."""
    frames = band_clip(4 * FPS)  # 48 frames: bins of 1/4 Hz
    gray = [analysis_gray(f, 1.0) for f in frames]
    motion = trajectories(gray, wrap=True)
    truth = band_shift(np.arange(len(frames)) / FPS) - band_shift(0.0)
    measured = motion[:, 0, MEASURED].mean(axis=(1, 2))
    assert np.sqrt(np.mean((measured - truth) ** 2)) < 0.1
    assert np.abs(motion[:, 1, MEASURED]).mean() < 0.15  # it moves sideways only
    assert np.abs(motion[:, :, 10:40]).mean() < 0.05  # the still part barely moves

    spec = clip_spectrum(motion, FPS, 1.0)
    assert len(spec.frequencies) == 16 and np.all(np.diff(spec.frequencies) > 0)
    assert set(FREQUENCIES) <= set(spec.frequencies.tolist())
    strongest = np.abs(spec.coefficients[:, 0, MEASURED]).mean(axis=(1, 2))
    for amplitude, frequency in zip(AMPLITUDES, FREQUENCIES, strict=True):
        found = strongest[list(spec.frequencies).index(frequency)]
        assert found == pytest.approx(amplitude, abs=0.1)
    assert spec.energy > 0.99
    changing = changing_pixels(gray)
    assert not changing[: BAND.start].any() and not changing[BAND.stop :].any()
    assert changing[BAND].mean() > 0.9


def test_learned_motion_reproduces_the_clip_in_the_loop(learned):
    """The issue's measure: band displacement error ≤ 0.5 px RMS over the loop."""
    frames = [read_image(p) for p in list_frames(learned["loop"] / "frames")]
    clip = [read_image(p) for p in sorted(learned["clip"].iterdir())]
    assert len(frames) == 4 * FPS
    output = np.array([horizontal_shift(frames[0], f) for f in frames])
    source = np.array([horizontal_shift(clip[0], c) for c in clip[: len(frames)]])
    truth = band_shift(np.arange(len(frames)) / FPS) - band_shift(0.0)
    error = np.sqrt(np.mean((output - source) ** 2))
    assert error <= 0.5, (error, output.round(2).tolist(), source.round(2).tolist())
    assert np.sqrt(np.mean((source - truth) ** 2)) < 0.2  # the measure itself is sound
    assert np.abs(output).max() > 3.0  # and the band really moves


def test_still_part_stays_bit_identical(learned):
    still = read_image(learned["still"])
    for path in list_frames(learned["loop"] / "frames"):
        frame = read_image(path)
        assert np.array_equal(frame[: BAND.start], still[: BAND.start])
        assert np.array_equal(frame[BAND.stop :], still[BAND.stop :])


def test_motion_file_holds_hertz_and_its_source(learned):
    volume = load_volume(learned["motion"])
    assert volume.unit == HERTZ and volume.prior == "clip"
    assert volume.image_shape == (HEIGHT, WIDTH)
    assert not volume.amplitude[: BAND.start].any() and not volume.amplitude[BAND.stop :].any()
    assert volume.amplitude[BAND].mean() > 0.99
    digest = hashlib.sha256()
    for path in sorted(learned["clip"].iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    source = volume.info["source"]
    assert source["sha256"] == digest.hexdigest() and source["frames"] == 96
    assert source["fps"] == FPS and Path(source["clip"]) == learned["clip"].resolve()
    manifest = read_manifest(learned["loop"])
    assert manifest["motion_origin"] == json.loads(json.dumps(source))
    assert math.isclose(manifest["fps"], FPS)


# ------------------------------------------------------------------ perspective placement


def test_perspective_clip_moves_only_the_chosen_region(tmp_path):
    """A perspective clip (not 2:1) tiles its motion over the region mask, with wrap."""
    frames = band_clip(4 * FPS)  # whole cycles of both sinusoids: no leakage between bins
    clip = write_clip(tmp_path / "persp", [f[:, :192] for f in frames])  # 192x128: 3:2
    region = np.zeros((64, 128), np.uint8)
    region[20:44, 100:128] = 255  # touches the right edge: continues across the seam
    region[20:44, 0:10] = 255
    cv2.imwrite(str(tmp_path / "region.png"), region)
    motion = tmp_path / "m.npz"
    result = run_cli("motion", clip, "--out", motion, "--fps", FPS, "--region",
                     tmp_path / "region.png")  # fmt: skip
    assert result.returncode == 0, result.stderr
    volume = load_volume(motion)
    assert volume.image_shape == (64, 128) and volume.info["source"]["projection"] == "perspective"
    assert np.array_equal(volume.amplitude > 0, region > 0)
    # The band's motion (rows 48-79 of the clip, tiled every 128 rows) is in the grid,
    # in radians of the panorama: 3 px of the clip is 3 · 2π/128 rad.
    strongest = np.abs(volume.coefficients[:, 0]).max()
    assert strongest == pytest.approx(AMPLITUDES[0] * 2 * np.pi / 128, rel=0.1)


def test_equirect_motion_for_a_larger_panorama(clip_folder, tmp_path):
    """--size: the clip's motion (radians) for a panorama of another size; the still
    part stays exactly still there too."""
    motion = tmp_path / "m.npz"
    result = run_cli("motion", clip_folder, "--out", motion, "--fps", FPS, "--size", "512x256")
    assert result.returncode == 0, result.stderr
    volume = load_volume(motion)
    assert volume.image_shape == (256, 512) and volume.grid_shape == (128, 256)
    rows = np.flatnonzero(volume.amplitude.any(axis=1))
    assert (rows.min(), rows.max()) == (2 * BAND.start, 2 * BAND.stop - 1)


# ------------------------------------------------------------------ bad input


@pytest.fixture
def inputs(tmp_path) -> dict:
    frames = band_clip(3)
    clip = write_clip(tmp_path / "clip", frames)
    one = write_clip(tmp_path / "one", frames[:1])
    mixed = write_clip(tmp_path / "mixed", frames[:2])
    small = cv2.resize(frames[0], (128, 64))
    cv2.imwrite(str(mixed / "clip_0002.png"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "region_small.png"), np.full((64, 128), 255, np.uint8))
    cv2.imwrite(str(tmp_path / "region_black.png"), np.zeros((HEIGHT, WIDTH), np.uint8))
    cv2.imwrite(str(tmp_path / "still_small.png"), small)
    return {"tmp": tmp_path, "clip": clip, "one": one, "mixed": mixed}


@pytest.mark.parametrize(
    ("case", "said"),
    [
        ("one_frame", "has 1 frame; motion needs at least 2"),
        ("mixed_sizes", "frame 2 is 128x64, frame 0 is 256x128"),
        ("region_size", "region_small.png is 128x64; for this equirect clip it must be 256x128"),
        ("region_black", "is black everywhere"),
        ("no_fps", "--fps must give its frame rate"),
        ("bad_fps", "argument --fps: must be a number from 1 to 240 fps, got 'nan'"),
        ("missing", "clip not found"),
    ],
)
def test_bad_clip_input_is_one_line_exit_2_nothing_written(inputs, case, said):
    tmp = inputs["tmp"]
    out = tmp / "m.npz"
    args = {
        "one_frame": [inputs["one"], "--fps", FPS],
        "mixed_sizes": [inputs["mixed"], "--fps", FPS],
        "region_size": [inputs["clip"], "--fps", FPS, "--region", tmp / "region_small.png"],
        "region_black": [inputs["clip"], "--fps", FPS, "--region", tmp / "region_black.png"],
        "no_fps": [inputs["clip"]],
        "bad_fps": [inputs["clip"], "--fps", "nan"],
        "missing": [tmp / "nowhere", "--fps", FPS],
    }[case]
    before = sorted(p.name for p in tmp.iterdir())
    result = run_cli("motion", *args, "--out", out)
    assert result.returncode == 2, result.stderr
    assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp.iterdir()) == before


def test_motion_of_another_size_than_the_still_is_refused(learned, inputs):
    out = inputs["tmp"] / "loop"
    result = run_cli("animate", inputs["tmp"] / "still_small.png", "--motion", learned["motion"],
                     "--out", out, "--seconds", 1, "--fps", FPS)  # fmt: skip
    assert result.returncode == 2
    assert "was made for 256x128; the panorama is 128x64" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
