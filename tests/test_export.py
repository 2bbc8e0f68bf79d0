"""``engine export``: spherical MP4 boxes (our reader and ffmpeg's), headset-safe H.264 levels,
cubemap orientation against the equirect and py360convert, and refused inputs."""

from __future__ import annotations

import json
import math
import re
import struct
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from engine.cli import main
from engine.errors import BadInput
from engine.export.h264 import check_headset_video, h264_level, parse_size
from engine.export.spherical import (
    SPHERICAL_V1_UUID,
    inject_spherical,
    read_moov,
    read_spherical,
    top_level_boxes,
)
from engine.media import (
    encode_mp4,
    frame_path,
    panorama_manifest,
    read_image,
    read_mp4,
    write_image,
    write_manifest,
)
from engine.projection import CUBE_FACES, direction_to_equirect

FPS = 8


def gradient_panorama(width: int, t: int = 0) -> np.ndarray:
    """Smooth, asymmetric 2:1 test image that changes with ``t``."""
    height = width // 2
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack(
        [
            xx / width * 255,
            yy / height * 255,
            (np.sin(xx / width * 2 * np.pi * 3 + t) + 1) * 120,
        ],
        axis=-1,
    )
    return image.astype(np.uint8)


def make_panorama(folder: Path, width: int = 128, frames: int = 6, fps: float | None = FPS):
    (folder / "frames").mkdir(parents=True)
    images = [gradient_panorama(width, t) for t in range(frames)]
    for index, image in enumerate(images):
        write_image(frame_path(folder / "frames", index, np.uint8), image)
    write_manifest(
        folder,
        panorama_manifest(
            width=width, height=width // 2, frames=frames, fps=fps, loop=True, source="test"
        ),
    )
    return images


def ffmpeg_stream_info(path: Path) -> str:
    """What ffmpeg itself reports about the file (an independent parser of our boxes)."""
    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
        capture_output=True,
        text=True,
    )
    return result.stderr


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    root = tmp_path_factory.mktemp("export")
    images = make_panorama(root / "forest_loop")
    out = root / "vr"
    code = main(["export", str(root / "forest_loop"), "--out", str(out), "--cubemap"])
    assert code == 0
    return out, images


# --------------------------------------------------------------------------- spherical boxes


def test_export_writes_a_360_mp4_with_v2_and_v1_metadata(exported) -> None:
    out, images = exported
    videos = list(out.glob("*_360*.mp4"))
    assert [v.name for v in videos] == ["forest_loop_360.mp4"]
    info = read_spherical(videos[0])
    for box in ("st3d", "sv3d", "svhd", "proj", "prhd", "equi", "uuid:spherical-v1"):
        assert box in info.boxes
    assert info.stereo_mode == "mono" and info.projection == "equirectangular"
    assert info.bounds == (0.0, 0.0, 0.0, 0.0)
    assert (info.yaw, info.pitch, info.roll) == (0.0, 0.0, 0.0)
    assert info.v1["Spherical"] == "true" and info.v1["Stitched"] == "true"
    assert info.v1["ProjectionType"] == "equirectangular"


def test_ffmpeg_reads_our_boxes_and_decodes_every_frame(exported) -> None:
    out, images = exported
    video = out / "forest_loop_360.mp4"
    report = ffmpeg_stream_info(video)
    assert re.search(r"[Ss]pherical( Mapping)?: equirectangular", report), report
    frames, fps = read_mp4(video)
    # Shifted chunk offsets: every frame decodes, in order, close to its source.
    assert len(frames) == len(images) and fps == FPS
    for decoded, source in zip(frames, images, strict=True):
        assert np.abs(decoded.astype(int) - source).mean() < 4


def test_injection_shifts_chunk_offsets_and_keeps_the_media_bytes(tmp_path: Path) -> None:
    images = [gradient_panorama(64, t) for t in range(5)]
    plain = encode_mp4(images, tmp_path / "plain.mp4", FPS)  # +faststart: moov before mdat
    tagged = inject_spherical(plain, tmp_path / "tagged_360.mp4", stereo="top-bottom", yaw=-30)
    old = {k: (s, e) for k, s, _, e in top_level_boxes(plain)}
    new = {k: (s, e) for k, s, _, e in top_level_boxes(tagged)}
    assert old[b"moov"][0] < old[b"mdat"][0], "ffmpeg's +faststart puts moov first"
    growth = (new[b"moov"][1] - new[b"moov"][0]) - (old[b"moov"][1] - old[b"moov"][0])
    assert growth > 0 and new[b"mdat"][0] == old[b"mdat"][0] + growth
    # The media data is byte-identical; only its position moved.
    plain_bytes, tagged_bytes = plain.read_bytes(), tagged.read_bytes()
    assert plain_bytes[slice(*old[b"mdat"])] == tagged_bytes[slice(*new[b"mdat"])]

    def chunk_offsets(path: Path) -> list[int]:
        moov, _, _ = read_moov(path)
        stbl = moov.first(b"trak").first(b"mdia").first(b"minf").first(b"stbl")
        stco = stbl.first(b"stco")
        (count,) = struct.unpack_from(">I", stco.payload, 4)
        return list(struct.unpack_from(f">{count}I", stco.payload, 8))

    assert chunk_offsets(tagged) == [o + growth for o in chunk_offsets(plain)]
    info = read_spherical(tagged)
    assert info.stereo_mode == "top-bottom" and info.yaw == -30
    assert info.v1["StereoMode"] == "top-bottom"
    assert "top and bottom" in ffmpeg_stream_info(tagged).lower()
    # Tagging twice replaces, never duplicates, the boxes.
    again = inject_spherical(tagged, tmp_path / "again_360.mp4", stereo="mono")
    twice = read_spherical(again)
    assert twice.boxes.count("sv3d") == 1 and twice.boxes.count("uuid:spherical-v1") == 1
    assert twice.stereo_mode == "mono" and "StereoMode" not in twice.v1


def test_v1_box_is_a_uuid_box_in_the_video_track(exported) -> None:
    out, _ = exported
    moov, _, _ = read_moov(out / "forest_loop_360.mp4")
    trak = moov.first(b"trak")
    uuids = [c for c in trak.children if c.kind == b"uuid"]
    assert len(uuids) == 1 and uuids[0].payload[:16] == SPHERICAL_V1_UUID.bytes
    assert b"<GSpherical:Spherical>true</GSpherical:Spherical>" in uuids[0].payload


def test_reader_refuses_a_file_that_is_not_mp4(tmp_path: Path) -> None:
    bogus = tmp_path / "x.mp4"
    bogus.write_bytes(b"\x00\x00\x00\x10free" + b"\x00" * 8)
    with pytest.raises(BadInput, match="not an MP4"):
        read_spherical(bogus)


# --------------------------------------------------------------------------- H.264 levels


@pytest.mark.parametrize(
    ("size", "fps", "level"),
    [
        ((1024, 512), 30, "3.1"),
        ((2048, 1024), 30, "4"),
        ((4096, 2048), 30, "5.1"),
        ((4096, 2048), 60, "5.2"),
        ((5760, 2880), 30, "6"),
    ],
)
def test_h264_level_follows_table_a1(size: tuple[int, int], fps: float, level: str) -> None:
    assert h264_level(*size, fps).name == level


@pytest.mark.parametrize(
    ("size", "fps", "stereo", "message"),
    [
        ((8192, 4096), 30, "mono", "8192x4096 at 30 fps is more than a headset decodes"),
        ((5760, 2880), 60, "mono", "5760x2880 at 60 fps is more than a headset decodes"),
        ((4096, 2048), 120, "mono", "frame rate 120 fps"),
        ((1000, 600), 30, "mono", "must be 2:1"),
        ((3840, 3840), 60, "top-bottom", "3840x3840 at 60 fps"),
        ((1001, 500), 30, "mono", "must be even"),
    ],
)
def test_headset_limits_refuse_with_the_value(size, fps, stereo, message) -> None:
    with pytest.raises(BadInput, match=re.escape(message)):
        check_headset_video(*size, fps, stereo)


def test_big_sizes_are_encoded_with_the_level_and_mvrange() -> None:
    from engine.export.h264 import x264_params

    params = x264_params(h264_level(5760, 2880, 30))
    assert params[params.index("-level:v") + 1] == "6"
    assert "mvrange=511" in params[params.index("-x264-params") + 1]


def test_encoded_stream_carries_the_chosen_level(tmp_path: Path) -> None:
    """x264 writes level_idc into the SPS: read it back from the avcC box."""
    from engine.export.h264 import encode_360

    path = encode_360(
        [gradient_panorama(128)] * 2, tmp_path / "a.mp4", 30, h264_level(1024, 512, 30)
    )
    moov, _, _ = read_moov(path)
    stsd = moov.first(b"trak").first(b"mdia").first(b"minf").first(b"stbl").first(b"stsd")
    avcc = stsd.children[0].first(b"avcC").payload
    profile, level_idc = avcc[1], avcc[3]
    assert profile == 100 and level_idc == 31  # High profile, level 3.1


# --------------------------------------------------------------------------- cubemaps


def test_cube_faces_look_where_the_equirect_says(exported) -> None:
    """The centre pixel of each face equals the equirect sampled along the face's axis."""
    out, images = exported
    pano = images[0].astype(np.float32)
    height, width = pano.shape[:2]
    for face, (forward, _, _) in CUBE_FACES.items():
        tile = read_image(out / "cubemap" / face / "frame_000000.png").astype(np.float32)
        n = tile.shape[0]
        centre = tile[n // 2 - 1 : n // 2 + 1, n // 2 - 1 : n // 2 + 1].mean(axis=(0, 1))
        col, row = direction_to_equirect(np.array(forward, float), width, height)
        r = int(min(row, height - 1))
        c = int(col) % width
        if face in "UD":  # at a pole every column meets: compare with the mean row
            expected = pano[r].mean(axis=0)
        else:
            cols = np.arange(c - 1, c + 1) % width  # the seam face straddles column 0
            expected = pano[r - 1 : r + 1][:, cols].mean(axis=(0, 1))
        tolerance = 40 if face in "UD" else 6
        assert np.abs(centre - expected).max() < tolerance, (face, centre, expected)


def test_horizon_sheet_matches_py360convert(exported) -> None:
    """py360convert (front face = equirect centre, order F R B L U D) as an independent oracle."""
    import py360convert

    out, images = exported
    ours = read_image(out / "cubemap" / "horizon.png").astype(np.float32)
    face = ours.shape[0]
    theirs = py360convert.e2c(images[0], face_w=face, cube_format="horizon").astype(np.float32)
    assert ours.shape == theirs.shape
    # Sides agree closely (py360convert's endpoint-inclusive grid differs by < 0.5 px).
    sides = slice(0, 4 * face)
    assert np.abs(ours[:, sides] - theirs[:, sides]).mean() < 4
    dice = read_image(out / "cubemap" / "dice.png")
    assert dice.shape == (3 * face, 4 * face, 3)
    np.testing.assert_array_equal(dice[face : 2 * face, face : 2 * face], ours[:, :face])
    assert (out / "cubemap" / "ORIENTATION.md").read_text().count("Unity") >= 1


def test_every_loop_frame_gets_six_faces_and_a_strip_video(exported) -> None:
    """An N-frame loop gives N numbered frames per face, frame n from loop frame n, and a
    6x1 strip video of N frames (behaviour, 6-frame loop)."""
    out, images = exported
    n = len(images)
    strip, _ = read_mp4(out / "cubemap" / "horizon.mp4")
    assert len(strip) == n
    face_size = strip[0].shape[0]
    assert strip[0].shape[1] == 6 * face_size
    for face in CUBE_FACES:
        files = sorted((out / "cubemap" / face).iterdir())
        assert [p.name for p in files] == [f"frame_{i:06d}.png" for i in range(n)]
    # The loop's frames differ; face F of frame t follows frame t.
    means = [read_image(out / "cubemap" / "F" / f"frame_{t:06d}.png").mean() for t in range(n)]
    assert len(set(np.round(means, 3))) == n
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"]["cubemap"]["frames"] == n


def test_cube_faces_turn_with_the_world(tmp_path: Path) -> None:
    """Rz(90°) takes +X to +Y: with --yaw 90, face F shows what face L shows unturned."""
    make_panorama(tmp_path / "p", frames=2)
    for yaw in ("0", "90"):
        argv = ["export", str(tmp_path / "p"), "--out", str(tmp_path / yaw), "--cubemap"]
        assert main([*argv, "--yaw", yaw]) == 0
    turned = read_image(tmp_path / "90" / "cubemap" / "F" / "frame_000001.png").astype(int)
    plain = read_image(tmp_path / "0" / "cubemap" / "L" / "frame_000001.png").astype(int)
    assert np.abs(turned - plain).max() <= 1
    assert json.loads((tmp_path / "90" / "manifest.json").read_text())["yaw_degrees"] == 90


@pytest.mark.parametrize("yaw", ["nan", "inf", "1e20"])
def test_a_yaw_that_is_not_a_finite_angle_is_refused(tmp_path: Path, capsys, yaw: str) -> None:
    make_panorama(tmp_path / "p", frames=1)
    argv = ["export", str(tmp_path / "p"), "--out", str(tmp_path / "o"), "--yaw", yaw]
    assert main(argv) == 2
    assert "--yaw" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_float_panoramas_keep_hdr_in_the_cubemaps(tmp_path: Path) -> None:
    pano = tmp_path / "hdr"
    (pano / "frames").mkdir(parents=True)
    frame = np.full((32, 64, 3), 4.0, np.float32)  # above 1: HDR
    frame[:16] *= 2
    for index in range(2):
        write_image(frame_path(pano / "frames", index, np.float32), frame)
    write_manifest(pano, panorama_manifest(width=64, height=32, frames=2, fps=FPS, loop=True))
    out = tmp_path / "out"
    assert main(["export", str(pano), "--out", str(out), "--cubemap"]) == 0
    faces = sorted((out / "cubemap" / "F").iterdir())
    assert [p.name for p in faces] == ["frame_000000.exr", "frame_000001.exr"]
    face = read_image(faces[0])
    assert face.dtype == np.float32 and face.max() > 4.0
    assert (out / "cubemap" / "panorama.hdr").is_file()
    assert (out / "cubemap" / "horizon_preview.png").is_file()


def test_size_resamples_without_a_seam(tmp_path: Path) -> None:
    make_panorama(tmp_path / "p", width=256, frames=2)
    # A seamless panorama (periodic in longitude) must stay seamless after resizing.
    xx = np.arange(256)[None, :, None]
    seamless = ((np.sin(xx / 256 * 2 * np.pi * 3 + np.arange(3)) + 1) * 120).astype(np.uint8)
    for index in range(2):
        write_image(frame_path(tmp_path / "p/frames", index, np.uint8), np.repeat(seamless, 128, 0))
    out = tmp_path / "out"
    assert main(["export", str(tmp_path / "p"), "--out", str(out), "--size", "128x64"]) == 0
    frames, _ = read_mp4(out / "p_360.mp4")
    assert frames[0].shape == (64, 128, 3)
    # The wrapped columns on both sides of the seam stay as close as interior neighbours.
    f = frames[0].astype(np.float32)
    seam = np.abs(f[:, 0] - f[:, -1]).mean()
    interior = np.abs(np.diff(f, axis=1)).mean()
    assert seam < 3 * interior + 2


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size", "4096x4096"], "must be 2:1"),
        (["--size", "big"], "size 'big' is not WIDTHxHEIGHT"),
        (["--size", "8192x4096"], "8192x4096 at 8 fps is more than a headset decodes"),
        (["--fps", "0"], "--fps: must be a number from 1 to 240 fps, got '0'"),
        (["--fps", "120"], "frame rate 120 fps"),
        (["--face-size", "0"], "--face-size: must be a whole number from 2 to 1,048,576 px"),
        (["--gltf", "scene.gltf", "--webxr"], "scene file not found"),
    ],
)
def test_bad_input_exits_2_naming_the_value_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    make_panorama(tmp_path / "p", width=64, frames=2)
    out = tmp_path / "out"
    assert main(["export", str(tmp_path / "p"), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_existing_output_and_missing_fps_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_panorama(tmp_path / "p", width=64, frames=2, fps=None)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    assert main(["export", str(tmp_path / "p"), "--out", str(tmp_path / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep"
    assert main(["export", str(tmp_path / "p"), "--out", str(tmp_path / "new")]) == 2
    assert "records no frame rate; pass --fps" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "p"), "--out", str(tmp_path / "new"), "--fps", "24"]) == 0
    assert math.isclose(read_mp4(tmp_path / "new" / "p_360.mp4")[1], 24)


def test_a_cancel_leaves_no_output(tmp_path: Path) -> None:
    from engine.export.vr import ExportOptions, export_panorama
    from engine.progress import JobContext

    make_panorama(tmp_path / "p", width=64, frames=4)
    ctx = JobContext()

    def cancel_on_third(stage: str, step: int, total: int) -> None:
        if step == 2:
            ctx.cancel.cancel()

    ctx.progress = cancel_on_third
    from engine.errors import JobCancelled

    with pytest.raises(JobCancelled):
        export_panorama(tmp_path / "p", tmp_path / "out", ExportOptions(cubemap=True), ctx)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_parse_size() -> None:
    assert parse_size("4096x2048") == (4096, 2048)
    with pytest.raises(BadInput, match="'0x0' must be positive"):
        parse_size("0x0")


def test_top_bottom_stereo_export_is_tagged_tb(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "stereo"
    (folder / "frames").mkdir(parents=True)
    left, right = gradient_panorama(64, 0), gradient_panorama(64, 2)
    for index in range(3):
        write_image(frame_path(folder / "frames", index, np.uint8), np.concatenate([left, right]))
    manifest = panorama_manifest(width=64, height=64, frames=3, fps=FPS, loop=True)
    write_manifest(folder, {**manifest, "stereo": "top-bottom"})
    out = tmp_path / "out"
    argv = ["export", str(folder), "--stereo", "top-bottom"]
    assert main([*argv, "--out", str(out), "--size", "128x128"]) == 0
    video = out / "stereo_360_TB.mp4"
    info = read_spherical(video)
    assert info.stereo_mode == "top-bottom" and info.v1["StereoMode"] == "top-bottom"
    assert "top and bottom" in ffmpeg_stream_info(video).lower()
    frames, _ = read_mp4(video)
    assert frames[0].shape == (128, 128, 3)
    # Each eye was resized on its own: the top half is the left eye.
    import cv2

    top = cv2.resize(frames[0][:64], (64, 32), interpolation=cv2.INTER_AREA).astype(float)
    to_left, to_right = np.abs(top - left).mean(), np.abs(top - right).mean()
    assert to_left < 6 and to_right > 3 * to_left, (to_left, to_right)
    assert main([*argv, "--out", str(tmp_path / "x"), "--webxr"]) == 2
    assert "take a mono panorama, not top-bottom stereo" in capsys.readouterr().err
    assert main(["export", str(folder), "--out", str(tmp_path / "y")]) == 2
    assert "must be 2:1" in capsys.readouterr().err
