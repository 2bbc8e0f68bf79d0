"""Previews as Blender shows them (engine.colour), BT.709 tags, EXR codecs, preview flags.

Behaviour tests on Blender's bundled CC0 HDRIs and Blender's own OCIO config (found in
the bpy module without importing it). Blender itself is the oracle in
``test_colour_blender.py``.
"""

from __future__ import annotations

import json
import subprocess

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from engine import colour
from engine.cli import main
from engine.errors import BadInput
from engine.media import EXR_CODECS, encode_mp4, read_image, to_display_uint8, write_image


@pytest.fixture(scope="module")
def config(blender_ocio_config):
    if blender_ocio_config is None:
        pytest.skip("the bpy module (Blender's OCIO config) is not installed")
    return blender_ocio_config


def small(hdri_dir, name: str, width: int = 512) -> np.ndarray:
    image = read_image(hdri_dir / f"{name}.exr")
    return cv2.resize(image, (width, width // 2), interpolation=cv2.INTER_AREA)


def clipped_fraction(picture: np.ndarray) -> float:
    """Share of the upper half's pixels at 255 in every channel (a white-clipped sky)."""
    upper = picture[: picture.shape[0] // 2]
    return float(np.mean(np.all(upper == 255, axis=2)))


# --------------------------------------------------------------------------- the transform


@pytest.mark.parametrize("view", colour.VIEWS)
def test_baked_view_agrees_with_opencolorio_exact(config, hdri_dir, view):
    """The baked lattice vs OpenColorIO's own processor on every pixel of four HDRIs,
    at two exposures: within a few 8-bit levels at worst, and almost never more than one."""
    worst, over_one = 0, []
    for name in ("forest", "sunset", "night", "interior"):
        image = small(hdri_dir, name)
        for exposure in (0.0, 1.5):
            ours = colour.display_transform(view, exposure, config).to_uint8(image)
            exact = colour.exact_to_uint8(config, view, image, exposure)
            diff = np.abs(ours.astype(int) - exact.astype(int))
            worst = max(worst, int(diff.max()))
            over_one.append(float(np.mean(diff > 1)))
    assert worst <= (8 if view == "AgX" else 2)
    assert max(over_one) <= 0.002


def test_held_out_sky_does_not_clip_under_agx(config, hdri_dir):
    """Held-out panoramas (not the forest the defaults were tuned on): AgX leaves ≤ 2 % of
    the upper half white, where the old clip at 1.0 (Standard) whitens far more."""
    for name in ("sunset", "city", "courtyard"):
        image = small(hdri_dir, name, 1024)
        agx = colour.display_transform("AgX", 0.0, config).to_uint8(image)
        assert clipped_fraction(agx) <= 0.02, name
    forest = small(hdri_dir, "forest", 1024)
    assert clipped_fraction(to_display_uint8(forest)) > 0.2  # the measure can fail
    assert clipped_fraction(colour.display_transform("AgX", 0.0, config).to_uint8(forest)) < 0.02


def test_exposure_brightens_by_stops(config, hdri_dir):
    image = small(hdri_dir, "interior", 256)
    shown = colour.display_transform("AgX", 0.0, config)
    brighter = colour.display_transform("AgX", 1.0, config).to_uint8(image)
    np.testing.assert_array_equal(brighter, shown.to_uint8(image * np.float32(2.0)))
    assert brighter.mean() > shown.to_uint8(image).mean() + 5


def test_standard_without_config_is_blenders_standard(config, hdri_dir, monkeypatch):
    """No config and no Blender on the machine: Standard falls back to the built-in sRGB
    curve (what Blender's Standard computes), within one level of OpenColorIO; AgX and
    Filmic are refused, naming how to pass a config."""
    monkeypatch.delenv("OCIO", raising=False)
    monkeypatch.setattr(colour, "installed_ocio_config", lambda: None)
    image = small(hdri_dir, "courtyard", 256)
    builtin = colour.display_transform("Standard", 0.5)
    assert builtin.config is None and builtin.describe()["transform"].startswith("built-in")
    exact = colour.exact_to_uint8(config, "Standard", image, 0.5)
    assert np.abs(builtin.to_uint8(image).astype(int) - exact.astype(int)).max() <= 1
    for view in ("AgX", "Filmic"):
        with pytest.raises(BadInput, match="--ocio-config"):
            colour.display_transform(view)


def test_without_a_config_the_blender_beside_this_python_gives_agx(config, monkeypatch):
    """No --ocio-config and no $OCIO: the config of the bpy module installed with the
    engine is found without importing bpy, so a plain ``engine animate`` previews in AgX."""
    monkeypatch.delenv("OCIO", raising=False)
    shown = colour.display_transform("AgX", 0.0)
    assert shown.config == config.resolve()
    assert shown.describe()["transform"] == "opencolorio"


def test_without_a_config_the_cli_previews_in_agx(config, hdri_dir, tmp_path, monkeypatch):
    """The command a user types first, with nothing set: AgX through Blender's config."""
    monkeypatch.delenv("OCIO", raising=False)
    still = tmp_path / "still.exr"
    write_image(still, small(hdri_dir, "forest", 256))
    out = tmp_path / "loop"
    assert main(["animate", str(still), "--out", str(out), "--seconds", "0.25"]) == 0
    preview = json.loads((out / "manifest.json").read_text())["preview"]
    assert preview["view"] == "AgX" and preview["ocio_config"] == str(config.resolve())


def test_uint8_passes_through_and_non_finite_is_black(config):
    picture = np.random.default_rng(0).integers(0, 256, (8, 16, 3), dtype=np.uint8)
    assert colour.display_transform("AgX", 3.0, config).to_uint8(picture) is picture
    odd = np.array([[[np.nan, -1.0, 0.0], [np.inf, 1e9, 65504.0]]], np.float32)
    shown = colour.display_transform("Standard", 0.0, config).to_uint8(odd)
    np.testing.assert_array_equal(shown, [[[0, 0, 0], [255, 255, 255]]])


@pytest.mark.parametrize(
    ("view", "exposure", "config_path", "match"),
    [
        ("agx", 0.0, None, "unknown view 'agx'"),
        ("AgX", float("nan"), None, "exposure .* got nan"),
        ("AgX", 40.0, None, "got 40"),
        ("AgX", 0.0, "/no/such/config.ocio", "/no/such/config.ocio"),
    ],
)
def test_bad_preview_settings_name_the_value(config, view, exposure, config_path, match):
    with pytest.raises(BadInput, match=match):
        colour.display_transform(view, exposure, config_path)


# --------------------------------------------------------------------------- MP4 and EXR


def test_mp4_is_tagged_and_converted_bt709(tmp_path):
    """The H.264 VUI says BT.709 (primaries, transfer, matrix; limited range) and the
    RGB→YUV conversion used BT.709's luma weights (ffmpeg's default would be BT.601)."""
    red = np.zeros((64, 128, 3), np.uint8)
    red[:] = (200, 30, 30)
    path = encode_mp4([red, red], tmp_path / "red.mp4", 8, crf=0)
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    info = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    assert "yuv420p(tv, bt709, progressive)" in info.stderr
    raw = subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
        capture_output=True,
        check=True,
    ).stdout
    luma = raw[64 * 32 + 64]
    bt709 = 16 + 219 * (0.2126 * 200 + 0.7152 * 30 + 0.0722 * 30) / 255  # 72.8
    bt601 = 16 + 219 * (0.299 * 200 + 0.587 * 30 + 0.114 * 30) / 255  # 85.4
    assert abs(luma - bt709) <= 1.5 < abs(luma - bt601)


@pytest.mark.parametrize("codec", sorted(EXR_CODECS))
def test_exr_codecs_round_trip_through_read_image(tmp_path, hdri_dir, codec):
    """Every codec's file reads back through engine.media.read_image (OpenCV's reader):
    lossless codecs exactly (half floats), DWA within its perceptual error, HDR kept."""
    image = small(hdri_dir, "sunset", 256)
    back = read_image(write_image(tmp_path / f"{codec}.exr", image, exr_codec=codec))
    stored = image.astype(np.float16).astype(np.float32)
    assert back.dtype == np.float32 and back.max() > 100  # the sun is kept
    if codec.startswith("dwa"):
        bright = stored > 2.0**-4
        rel = np.abs(back - stored)[bright] / stored[bright]
        assert np.quantile(rel, 0.999) < 0.1
    else:
        np.testing.assert_array_equal(back, stored)


# --------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--view", "Filmix"], "Filmix"),
        (["--exposure", "nan"], "nan"),
        (["--exr-codec", "lzw"], "lzw"),
        (["--ocio-config", "/no/such.ocio"], "/no/such.ocio"),
    ],
)
def test_animate_bad_preview_flags_exit_2_nothing_written(tmp_path, capsys, flags, named):
    image = write_image(tmp_path / "pano.exr", np.ones((32, 64, 3), np.float32))
    out = tmp_path / "out"
    assert main(["animate", str(image), "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pano.exr"]


def test_export_and_multicam_refuse_an_unknown_view(tmp_path, capsys, three_cameras_json):
    image = write_image(tmp_path / "pano.exr", np.ones((32, 64, 3), np.float32))
    assert main(["export", str(image), "--out", str(tmp_path / "e"), "--view", "Raw"]) == 2
    assert "'Raw'" in capsys.readouterr().err
    argv = ["multicam", "--panorama", str(image), "--cameras", str(three_cameras_json)]
    assert main([*argv, "--out", str(tmp_path / "m"), "--exposure", "inf"]) == 2
    assert "inf" in capsys.readouterr().err
    assert not (tmp_path / "e").exists() and not (tmp_path / "m").exists()
