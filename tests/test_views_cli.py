"""``python -m engine views``: per-camera frame folders, synchronised; bad input refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, camera_dict

from engine.cli import main
from engine.media import read_image, read_manifest, write_image


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def small_panorama(tmp_path: Path, hdri: Path, width: int = 256) -> Path:
    """The bundled HDRI reduced to width×width/2 (float EXR, HDR values kept)."""
    image = read_image(hdri)
    small = cv2.resize(image, (width, width // 2), interpolation=cv2.INTER_AREA)
    return write_image(tmp_path / "pano.exr", small)


def test_help_lists_every_subcommand():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("views", "animate", "generate", "export", "multicam", "worker"):
        assert command in result.stdout


def test_views_of_a_bundled_hdri_writes_three_camera_folders(
    tmp_path, forest_hdri, three_cameras_json
):
    out = tmp_path / "views"
    result = run_cli(
        "views",
        "--panorama",
        str(forest_hdri),
        "--cameras",
        str(three_cameras_json),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == ["Front", "Seam", "Zenith"]
    for name in names:
        frames = sorted((out / name).iterdir())
        assert [f.name for f in frames] == ["frame_000000.exr"]
        frame = read_image(frames[0])
        assert frame.dtype == np.float32  # HDR in → float EXR out
    assert read_image(out / "Seam" / "frame_000000.exr").shape == (40, 80, 3)
    manifest = read_manifest(out)
    assert manifest["frames"] == 1 and len(manifest["cameras"]) == 3
    saved = json.loads((out / "cameras.json").read_text())
    assert saved[0]["opencv"]["K"][0][0] > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_frame_folder_keeps_count_numbering_and_8bit_kind(
    tmp_path, forest_hdri, three_cameras_json
):
    frames = tmp_path / "frames"
    frames.mkdir()
    pano = read_image(small_panorama(tmp_path, forest_hdri))
    for n in (5, 6, 7, 8):
        shifted = np.roll(pano, n * 4, axis=1)
        write_image(frames / f"shot_{n:04d}.png", (np.clip(shifted, 0, 1) * 255).astype(np.uint8))
    out = tmp_path / "views"
    assert (
        main(
            [
                "views",
                "--panorama",
                str(frames),
                "--cameras",
                str(three_cameras_json),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    for cam in ("Front", "Zenith", "Seam"):
        names = sorted(p.name for p in (out / cam).iterdir())
        assert names == [f"frame_{n:06d}.png" for n in (5, 6, 7, 8)]
        assert read_image(out / cam / names[0]).dtype == np.uint8
    # Frame n of every camera shows the same instant: the panorama rotates between
    # frames, so consecutive frames of one camera differ.
    a = read_image(out / "Front" / "frame_000005.png").astype(int)
    b = read_image(out / "Front" / "frame_000006.png").astype(int)
    assert np.abs(a - b).mean() > 0.5


def test_output_folder_with_manifest_is_accepted(tmp_path, forest_hdri, three_cameras_json):
    from engine.media import FRAMES_DIR, frame_path, panorama_manifest, write_manifest

    src = tmp_path / "loop"
    (src / FRAMES_DIR).mkdir(parents=True)
    pano = read_image(small_panorama(tmp_path, forest_hdri))
    for i in range(3):
        write_image(frame_path(src / FRAMES_DIR, i, pano.dtype), pano * (1 + i))
    write_manifest(src, panorama_manifest(width=256, height=128, frames=3, fps=12, loop=True))
    out = tmp_path / "views"
    assert (
        main(
            [
                "views",
                "--panorama",
                str(src),
                "--cameras",
                str(three_cameras_json),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    manifest = read_manifest(out)
    assert manifest["frames"] == 3 and manifest["fps"] == 12 and manifest["loop"] is True
    assert len(list((out / "Zenith").iterdir())) == 3


def _bad_cameras(tmp_path: Path, **change) -> Path:
    path = tmp_path / "bad_cameras.json"
    path.write_text(json.dumps([camera_dict("BadCam", **change)]))
    return path


def _missing_key_cameras(tmp_path: Path) -> Path:
    entry = camera_dict("NoLens")
    del entry["lens"]
    path = tmp_path / "missing.json"
    path.write_text(json.dumps([entry]))
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("not_2to1", "must be 2:1"),
        ("missing_panorama", "panorama not found"),
        ("unreadable_panorama", "cannot read image"),
        ("missing_key", "missing key 'lens'"),
        ("singular", "singular"),
        ("sheared", "not rigid"),
        ("zero_lens", "lens must be a number from 0.01 to 100,000 mm, got 0"),
        ("negative_resolution", "resolution_x must be a positive integer, got -64"),
        ("unknown_fit", "unknown sensor_fit 'SQUARE'"),
        ("missing_cameras", "cameras file not found"),
        ("output_exists", "already exists"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(
    tmp_path, forest_hdri, three_cameras_json, case, expected
):
    panorama, cameras = str(forest_hdri), str(three_cameras_json)
    out = tmp_path / "out"
    if case == "not_2to1":
        panorama = str(write_image(tmp_path / "square.png", np.zeros((64, 64, 3), np.uint8)))
    elif case == "missing_panorama":
        panorama = str(tmp_path / "nope.exr")
    elif case == "unreadable_panorama":
        (tmp_path / "broken.exr").write_bytes(b"not an exr at all")
        panorama = str(tmp_path / "broken.exr")
    elif case == "missing_key":
        cameras = str(_missing_key_cameras(tmp_path))
    elif case == "singular":
        cameras = str(_bad_cameras(tmp_path, matrix_world=[[0] * 4] * 3 + [[0, 0, 0, 1]]))
    elif case == "sheared":
        sheared = [[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
        cameras = str(_bad_cameras(tmp_path, matrix_world=sheared))
    elif case == "zero_lens":
        cameras = str(_bad_cameras(tmp_path, lens=0))
    elif case == "negative_resolution":
        cameras = str(_bad_cameras(tmp_path, resolution_x=-64))
    elif case == "unknown_fit":
        cameras = str(_bad_cameras(tmp_path, sensor_fit="SQUARE"))
    elif case == "missing_cameras":
        cameras = str(tmp_path / "none.json")
    elif case == "output_exists":
        out.mkdir()
        (out / "precious.txt").write_text("mine")
    before = sorted(os.listdir(tmp_path))
    result = run_cli("views", "--panorama", panorama, "--cameras", cameras, "--out", str(out))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert sorted(os.listdir(tmp_path)) == before  # nothing written
    if case == "output_exists":
        assert (out / "precious.txt").read_text() == "mine"  # nothing overwritten
