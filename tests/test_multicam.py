"""``engine multicam``: three cameras in sync — equal clips, MP4s, contact sheet, cameras.json
with OpenCV conventions and relative poses — and refused inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import camera_dict

from engine.cameras import BlenderCamera
from engine.cli import main
from engine.media import (
    frame_path,
    list_frames,
    panorama_manifest,
    read_image,
    read_mp4,
    write_image,
    write_manifest,
)
from engine.projection import equirect_to_camera

FRAMES = 6
FPS = 6


def camera_entry(name: str, yaw_degrees: float, position=(0.0, 0.0, 0.0), **over) -> dict:
    """A Blender camera looking horizontally along +X turned by ``yaw`` about +Z."""
    a = math.radians(yaw_degrees)
    forward = np.array([math.cos(a), math.sin(a), 0.0])
    up = np.array([0.0, 0.0, 1.0])
    matrix = np.eye(4)
    matrix[:3, :3] = np.stack([np.cross(forward, up), up, -forward], axis=1)
    matrix[:3, 3] = position
    return camera_dict(name, matrix_world=matrix.tolist(), **{"lens": 20.0, **over})


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("multicam")
    pano = root / "loop"
    (pano / "frames").mkdir(parents=True)
    xx = np.arange(128)[None, :, None]
    yy = np.arange(64)[:, None, None]
    for t in range(FRAMES):
        # Each frame is tagged by its index in the green channel; longitude in red.
        image = np.zeros((64, 128, 3), np.uint8)
        image[..., 0:1] = (np.sin(xx / 128 * 2 * np.pi) + 1) * 120 + 0 * yy
        image[..., 1] = 20 + 40 * t
        image[..., 2:3] = yy * 3 + 0 * xx
        write_image(frame_path(pano / "frames", t, np.uint8), image)
    write_manifest(pano, panorama_manifest(width=128, height=64, frames=FRAMES, fps=FPS, loop=True))
    cameras = [
        camera_entry("Front", 0.0),
        camera_entry("Left", 90.0, position=(0.0, 2.0, 0.0)),
        camera_entry("Back Cam", 180.0, position=(1.0, 0.0, 0.5)),
    ]
    (root / "cameras.json").write_text(json.dumps(cameras))
    return root


@pytest.fixture(scope="module")
def multicam(scene: Path) -> Path:
    out = scene / "mc"
    argv = ["multicam", "--panorama", str(scene / "loop"), "--cameras", str(scene / "cameras.json")]
    assert main([*argv, "--out", str(out), "--frame-range", "1", str(FRAMES)]) == 0
    return out


def test_views_command_gives_three_clips_of_equal_length(scene: Path) -> None:
    out = scene / "views"
    argv = ["views", "--panorama", str(scene / "loop"), "--cameras", str(scene / "cameras.json")]
    assert main([*argv, "--out", str(out)]) == 0
    # Folders are the contract's safe names, recorded in the manifest.
    folders = {
        c["name"]: c["folder"] for c in json.loads((out / "manifest.json").read_text())["cameras"]
    }
    assert folders == {"Front": "Front", "Left": "Left", "Back Cam": "Back_Cam"}
    clips = {name: list_frames(out / folder) for name, folder in folders.items()}
    assert {len(c) for c in clips.values()} == {FRAMES}
    assert all([p.name for p in c] == [p.name for p in clips["Front"]] for c in clips.values())


def test_every_camera_shows_the_same_instant_in_frame_n(multicam: Path, scene: Path) -> None:
    manifest = json.loads((multicam / "manifest.json").read_text())
    assert manifest["frames"] == FRAMES and manifest["blender_frame_range"] == [1, FRAMES]
    for cam in manifest["cameras"]:
        frames = list_frames(multicam / cam["frames"])
        assert len(frames) == FRAMES
        for t, path in enumerate(frames):
            green = read_image(path)[..., 1].mean()
            assert abs(green - (20 + 40 * t)) < 1.5, (cam["name"], t, green)


def test_clips_match_the_reprojection_and_mp4s_have_equal_length(multicam: Path, scene: Path):
    pano = read_image(scene / "loop/frames/frame_000002.png")
    entries = json.loads((scene / "cameras.json").read_text())
    for entry in entries:
        camera = BlenderCamera.from_dict(entry)
        expected = equirect_to_camera(pano, camera)
        folder = camera.name.replace(" ", "_")
        got = read_image(multicam / "views" / folder / "frame_000002.png")
        np.testing.assert_array_equal(got, expected)
    lengths = set()
    for name in ("Front", "Left", "Back_Cam"):
        frames, fps = read_mp4(multicam / f"{name}.mp4")
        lengths.add(len(frames))
        assert fps == FPS
    assert lengths == {FRAMES}


def test_contact_sheet_is_a_grid_of_cameras_by_instants(multicam: Path) -> None:
    from engine.multicam.sheet import SHEET_HEADER_H, SHEET_LABEL_W

    top, left = SHEET_HEADER_H, SHEET_LABEL_W
    sheet = read_image(multicam / "contact_sheet.png")
    # A header, then 3 rows of 180 px tiles with 4 px gaps; a label column, then 4
    # columns of 240 px (64×48 scaled) tiles.
    assert sheet.shape == (top + 3 * 180 + 2 * 4, left + 4 * 240 + 3 * 4, 3)
    # The labels are drawn: bright text pixels in the header and the label column.
    assert sheet[:top, left:].max() > 200 and sheet[top:, :left].max() > 200
    # Columns are instants: the green tag grows left to right, the same in every row.
    tags = [
        [sheet[top + r * 184 + 90, left + c * 244 + 120, 1] for c in range(4)] for r in range(3)
    ]
    for row in tags:
        assert list(row) == sorted(row) and row[0] < row[-1]
        np.testing.assert_allclose(row, tags[0], atol=2)


def test_cameras_json_has_blender_and_opencv_conventions(multicam: Path) -> None:
    entries = json.loads((multicam / "cameras.json").read_text())
    assert [e["name"] for e in entries] == ["Front", "Left", "Back Cam"]
    back = entries[2]
    assert back["opencv"]["relative_to"] == "Front"
    c2w = np.array(back["opencv"]["camera_to_world"])
    blender = np.array(back["matrix_world"])
    np.testing.assert_allclose(c2w, blender @ np.diag([1, -1, -1, 1]), atol=1e-9)
    rel = np.array(back["opencv"]["relative_pose_3x4"])
    # The back camera is turned half a revolution about the (shared) vertical axis.
    np.testing.assert_allclose(np.trace(rel[:, :3]), -1.0, atol=1e-9)
    k = np.array(back["opencv"]["K"])
    assert k[0, 2] == 32 and k[1, 2] == 24


@pytest.mark.parametrize(
    ("cameras", "extra", "message"),
    [
        ([], [], "lists no cameras"),
        ([camera_entry("Ortho", 0, type="ORTHO")], [], "camera 'Ortho' is ORTHO"),
        ([camera_entry("Pano", 0, type="PANO")], [], "camera 'Pano' is PANO"),
        ([camera_entry("A", 0)], ["--frame-range", "1", "250"], "frame range 1-250 is 250"),
        (
            [camera_entry("A", 0)],
            ["--instants", "0"],
            "--instants: must be a whole number from 1 to 64",
        ),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], cameras, extra, message
) -> None:
    (tmp_path / "cameras.json").write_text(json.dumps(cameras))
    out = tmp_path / "out"
    argv = [
        "multicam",
        "--panorama",
        str(scene / "loop"),
        "--cameras",
        str(tmp_path / "cameras.json"),
    ]
    assert main([*argv, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["cameras.json"]


def test_existing_output_is_refused(multicam: Path, scene: Path) -> None:
    argv = ["multicam", "--panorama", str(scene / "loop"), "--cameras", str(scene / "cameras.json")]
    before = sorted(p.name for p in multicam.iterdir())
    assert main([*argv, "--out", str(multicam)]) == 2
    assert sorted(p.name for p in multicam.iterdir()) == before


def test_camera_names_that_collide_once_made_safe_never_overwrite(scene: Path, tmp_path: Path):
    """``a b``, ``a_b``, ``a:b`` and a name equal to ``manifest.json`` look four ways: four
    folders and four videos, each with its own camera's pixels (behaviour)."""
    names = {"a b": 0.0, "a_b": 90.0, "a:b": 180.0, "manifest.json": 270.0}
    cameras = [camera_entry(name, yaw) for name, yaw in names.items()]
    (tmp_path / "cameras.json").write_text(json.dumps(cameras))
    out = tmp_path / "mc"
    argv = [
        "multicam",
        "--panorama",
        str(scene / "loop"),
        "--cameras",
        str(tmp_path / "cameras.json"),
    ]
    assert main([*argv, "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "multicam"  # not overwritten by a camera's folder
    folders = {c["name"]: c["folder"] for c in manifest["cameras"]}
    assert len(set(folders.values())) == 4 and folders["a_b"] == "a_b"
    pano = read_image(scene / "loop/frames/frame_000001.png")
    for entry in cameras:
        expected = equirect_to_camera(pano, BlenderCamera.from_dict(entry))
        got = read_image(out / "views" / folders[entry["name"]] / "frame_000001.png")
        np.testing.assert_array_equal(got, expected)
        assert len(read_mp4(out / f"{folders[entry['name']]}.mp4")[0]) == FRAMES
