"""``python -m engine animate`` end to end: output folder contract, files on disk, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO

from engine.animate.spectral import load_volume
from engine.cli import main
from engine.media import (
    list_frames,
    read_image,
    read_manifest,
    read_mp4,
    to_display_uint8,
    write_image,
)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def loop_ratio(frames: list[np.ndarray]) -> float:
    shown = [to_display_uint8(f).astype(np.float32) for f in frames]
    d = [np.abs(shown[(t + 1) % len(shown)] - shown[t]).mean() for t in range(len(shown))]
    return float(d[-1] / ((d[-2] + d[0]) / 2))


def seam_rank(frame: np.ndarray) -> float:
    shown = to_display_uint8(frame).astype(np.float32)
    interior = np.abs(np.diff(shown, axis=1)).mean(axis=(0, 2))
    return float((interior < np.abs(shown[:, 0] - shown[:, -1]).mean()).mean() * 100)


def half_float(image: np.ndarray) -> np.ndarray:
    """What a half-float EXR stores of a float32 frame."""
    return np.clip(image, -65504, 65504).astype(np.float16).astype(np.float32)


@pytest.fixture
def small_exr(tmp_path, hdri_dir) -> Path:
    image = read_image(hdri_dir / "sunset.exr")
    return write_image(
        tmp_path / "pano.exr", cv2.resize(image, (256, 128), interpolation=cv2.INTER_AREA)
    )


def test_night_hdri_native_two_seconds_at_12_fps_then_views(tmp_path, hdri_dir, three_cameras_json):
    source = hdri_dir / "night.exr"
    out = tmp_path / "a"
    result = run_cli("animate", source, "--out", out, "--seconds", 2, "--fps", 12)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    # The output-folder contract.
    assert sorted(p.name for p in out.iterdir()) == [
        "frames",
        "manifest.json",
        "motion.npz",
        "panorama.mp4",
    ]
    frames = list_frames(out / "frames")
    assert [p.name for p in frames] == [f"frame_{i:06d}.exr" for i in range(24)]
    manifest = read_manifest(out)
    assert manifest["projection"] == "equirectangular" and manifest["loop"] is True
    assert (manifest["width"], manifest["height"], manifest["frames"]) == (1024, 512, 24)
    assert manifest["fps"] == 12 and manifest["orientation"]["center"] == "+X"
    assert manifest["source"] == str(source) and manifest["prior"] == "procedural"
    assert manifest["seed"] == 0 and manifest["strength"] == 1.0
    # Physical time: a 2 s loop is too short for drift's 0.05-0.2 Hz; it says so.
    assert manifest["frequency_unit"] == "hertz"
    kinds = manifest["motion_kinds"]
    assert kinds["drift"]["oscillates"] is False and "too short" in kinds["drift"]["note"]
    assert kinds["sway"]["oscillates"] is True and kinds["sway"]["cycles_per_loop"][0] >= 1
    assert {"motion", "render", "write_frames", "encode_preview"} <= set(manifest["timings"])
    previews, fps = read_mp4(out / "panorama.mp4")
    assert len(previews) == 24 and fps == 12 and previews[0].shape == (512, 1024, 3)
    assert load_volume(out / "motion.npz").image_shape == (512, 1024)
    # HDR kept on disk; the loop and the seam hold on the written frames.
    images = [read_image(p) for p in frames]
    assert images[0].dtype == np.float32 and max(float(f.max()) for f in images) > 100
    assert 0.8 <= loop_ratio(images) <= 1.25
    assert seam_rank(images[12]) <= 99.0
    # `engine views` accepts the folder: every camera gets the 24 frames.
    views = tmp_path / "views"
    result = run_cli("views", "--panorama", out, "--cameras", three_cameras_json, "--out", views)
    assert result.returncode == 0, result.stderr
    for camera in ("Front", "Zenith", "Seam"):
        assert len(list_frames(views / camera)) == 24
    assert json.loads((views / "manifest.json").read_text())["loop"] is True


def test_black_mask_on_disk_equals_the_input_as_stored(tmp_path, small_exr):
    """With a lossless codec (piz) black-masked pixels on disk are the input, bit for bit."""
    image = read_image(small_exr)
    mask = np.full((128, 256, 3), 255, np.uint8)
    mask[60:, :] = 0  # the ground and the water stay still
    mask[:20, 30:90] = 0
    mask_path = write_image(tmp_path / "mask.png", mask)
    out = tmp_path / "masked"
    assert main(["animate", str(small_exr), "--out", str(out), "--seconds", "1", "--fps", "8",
                 "--mask", str(mask_path), "--strength", "2",
                 "--exr-codec", "piz"]) == 0  # fmt: skip
    still = mask[..., 0] == 0
    expected = half_float(image)[still]
    moved = 0
    for path in list_frames(out / "frames"):
        frame = read_image(path)
        np.testing.assert_array_equal(frame[still], expected)
        moved += int(np.any(frame[~still] != half_float(image)[~still]))
    assert moved == 8
    assert read_manifest(out)["mask"] == str(mask_path)


def test_png_in_png_frames_out_still_pixels_exact(tmp_path, small_exr):
    png = write_image(tmp_path / "pano.png", to_display_uint8(read_image(small_exr)))
    mask = np.zeros((128, 256), np.uint16)
    mask[:50] = 65535
    mask_path = write_image(tmp_path / "mask.png", np.repeat(mask[..., None], 3, axis=2))
    out = tmp_path / "png"
    assert main(["animate", str(png), "--out", str(out), "--seconds", "0.5", "--fps", "8",
                 "--mask", str(mask_path)]) == 0  # fmt: skip
    source = read_image(png)
    frames = [read_image(p) for p in list_frames(out / "frames")]
    assert len(frames) == 4 and all(f.dtype == np.uint8 for f in frames)
    for frame in frames:
        np.testing.assert_array_equal(frame[50:], source[50:])
    assert read_manifest(out)["frame_type"] == "uint8"


def test_saved_motion_reproduces_the_frames_and_strength_zero_the_still(tmp_path, small_exr):
    first, reused, calm = tmp_path / "first", tmp_path / "reused", tmp_path / "calm"
    args = ["--seconds", "1", "--fps", "6", "--exr-codec", "zip"]
    assert main(["animate", str(small_exr), "--out", str(first), "--seed", "3", *args]) == 0
    motion = str(first / "motion.npz")
    assert main(["animate", str(small_exr), "--out", str(reused), "--motion", motion, *args]) == 0
    assert main(["animate", str(small_exr), "--out", str(calm), "--motion", motion,
                 "--strength", "0", *args]) == 0  # fmt: skip
    # A mask limits a reused motion further: all black keeps everything still.
    black = write_image(tmp_path / "black.png", np.zeros((128, 256, 3), np.uint8))
    stilled = tmp_path / "stilled"
    assert main(["animate", str(small_exr), "--out", str(stilled), "--motion", motion,
                 "--mask", str(black), *args]) == 0  # fmt: skip
    assert read_manifest(reused)["motion_source"] == motion
    image = half_float(read_image(small_exr))
    folders = (first, reused, calm, stilled)
    for a, b, c, d in zip(*(list_frames(f / "frames") for f in folders), strict=True):
        np.testing.assert_array_equal(read_image(a), read_image(b))
        np.testing.assert_array_equal(read_image(c), image)
        np.testing.assert_array_equal(read_image(d), image)
    assert not np.array_equal(read_image(list_frames(first / "frames")[2]), image)


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def bad_inputs(tmp_path, small_exr):
    """name → (extra argv, text the one-line error must contain)."""
    wide = write_image(tmp_path / "wide.png", np.zeros((100, 300, 3), np.uint8))
    broken = tmp_path / "broken.exr"
    broken.write_bytes(b"\x00not an image")
    small_mask = write_image(tmp_path / "small_mask.png", np.zeros((64, 128, 3), np.uint8))
    grey_map = tmp_path / "grey_map.png"
    cv2.imwrite(str(grey_map), np.zeros((128, 256), np.uint8))
    bad_npz = tmp_path / "bad.npz"
    bad_npz.write_bytes(b"PK\x03\x04garbage")
    other_size = tmp_path / "other"
    other_image = write_image(tmp_path / "other.exr", np.ones((64, 128, 3), np.float32))
    assert main(["animate", str(other_image), "--out", str(other_size), "--seconds", "0.5",
                 "--fps", "8"]) == 0  # fmt: skip
    exists = tmp_path / "exists"
    exists.mkdir()
    pano = str(small_exr)
    return {
        "not 2:1": ([str(wide)], "300x100"),
        "unreadable": ([str(broken)], str(broken)),
        "missing": ([str(tmp_path / "nope.exr")], "nope.exr"),
        "mask size": ([pano, "--mask", str(small_mask)], "128x64"),
        "seconds 0": (
            [pano, "--seconds", "0"],
            "--seconds: must be a number above 0",
        ),
        "seconds < 0": ([pano, "--seconds", "-1"], "got '-1'"),
        "fps 0": ([pano, "--fps", "0"], "--fps: must be a number from 1 to 240 fps, got '0'"),
        "frames not whole": ([pano, "--seconds", "1.5", "--fps", "5"], "7.5 frames"),
        "strength < 0": ([pano, "--strength", "-0.5"], "got '-0.5'"),
        "strength NaN": ([pano, "--strength", "nan"], "got 'nan'"),
        "strength huge": ([pano, "--strength", "1e30"], "got '1e30'"),
        "seed < 0": ([pano, "--seed", "-2"], "got '-2'"),
        "too few frames": ([pano, "--seconds", "0.25", "--fps", "8"], "got seconds × fps = 2"),
        "output exists": ([pano], str(exists)),
        "bad npz": ([pano, "--motion", str(bad_npz)], str(bad_npz)),
        "npz of another size": ([pano, "--motion", str(other_size / "motion.npz")], "128x64"),
        "motion map size": ([pano, "--motion-map", str(small_mask)], "motion map"),
        "motion map grey": ([pano, "--motion-map", str(grey_map)], "grey_map.png is grey"),
        "drift direction NaN": ([pano, "--drift-direction", "nan"], "--drift-direction"),
        "drift direction inf": ([pano, "--drift-direction", "inf"], "got 'inf'"),
        "drift speed NaN": ([pano, "--drift-speed", "nan"], "--drift-speed"),
        "drift speed -inf": ([pano, "--drift-speed=-inf"], "got '-inf'"),
        "drift speed < 0": ([pano, "--drift-speed", "-2"], "got -2.0"),
        "map with saved motion": (
            [pano, "--motion", str(other_size / "motion.npz"), "--drift-speed", "3"],
            "--drift-speed",
        ),
    }


def test_bad_input_one_line_exit_2_nothing_written(tmp_path, bad_inputs, capsys):
    before = set(tmp_path.iterdir())
    for name, (argv, text) in bad_inputs.items():
        out = tmp_path / ("exists" if name == "output exists" else "out")
        code = main(["animate", *argv[:1], "--out", str(out), *argv[1:]])
        err = capsys.readouterr().err.strip()
        assert code == 2, (name, err)
        assert err.startswith("error: ") and "\n" not in err, (name, err)
        assert text in err, (name, err)
        assert set(tmp_path.iterdir()) == before, name  # no output, no temporary sibling


def test_bad_input_exit_code_from_the_real_process(tmp_path, small_exr):
    result = run_cli("animate", small_exr, "--out", tmp_path / "out", "--strength", "-1")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "'-1'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_subcommand_module_imports_only_the_standard_library():
    code = (
        "import sys, engine.animate.command as c, engine.animate as a; "
        "heavy = {'numpy', 'cv2', 'numba', 'torch'} & set(sys.modules); "
        "assert not heavy, heavy; assert callable(c.run) and c.HELP"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
