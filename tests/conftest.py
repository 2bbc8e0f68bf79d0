"""Shared fixtures: real input (Blender's bundled CC0 HDRIs) and camera descriptions."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def bundled_hdri_dir() -> Path:
    """Blender's bundled studio-light HDRIs (1024×512 EXR), found without importing bpy."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        pytest.skip("the bpy module is not installed (pip install '.[test]')")
    folders = sorted(Path(spec.origin).parent.glob("*/datafiles/studiolights/world"))
    if not folders:
        pytest.skip("bpy has no bundled studio-light HDRIs")
    return folders[-1]


def bundled_ocio_config() -> Path | None:
    """Blender's own OCIO config (AgX, Filmic, Standard) inside the bpy module, found
    without importing bpy; ``None`` if bpy is not installed."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        return None
    configs = sorted(Path(spec.origin).parent.glob("*/datafiles/colormanagement/config.ocio"))
    return configs[-1] if configs else None


@pytest.fixture(scope="session", autouse=True)
def blender_ocio_config() -> Path | None:
    """Every test sees Blender's config through ``$OCIO``, as the add-on passes it to the
    engine (engine calls and the subprocesses tests start inherit it)."""
    config = bundled_ocio_config()
    if config is not None and not os.environ.get("OCIO"):
        os.environ["OCIO"] = str(config)
    return config


@pytest.fixture(scope="session")
def hdri_dir() -> Path:
    return bundled_hdri_dir()


@pytest.fixture(scope="session")
def forest_hdri(hdri_dir: Path) -> Path:
    return hdri_dir / "forest.exr"


def euler_matrix(rx: float, ry: float, rz: float, location=(0.0, 0.0, 0.0)) -> list[list[float]]:
    """Blender's XYZ Euler (degrees) as a 4×4 matrix_world (R = Rz·Ry·Rx)."""
    ax, ay, az = (math.radians(a) for a in (rx, ry, rz))
    rx_m = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry_m = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz_m = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rz_m @ ry_m @ rx_m
    m[:3, 3] = location
    return m.tolist()


def camera_dict(name: str, rotation=(90, 0, -90), **overrides) -> dict:
    """A cameras.json entry with Blender's defaults; rotation in degrees (XYZ Euler)."""
    entry = {
        "name": name,
        "matrix_world": euler_matrix(*rotation),
        "lens": 50.0,
        "sensor_width": 36.0,
        "sensor_height": 24.0,
        "sensor_fit": "AUTO",
        "shift_x": 0.0,
        "shift_y": 0.0,
        "resolution_x": 64,
        "resolution_y": 48,
        "pixel_aspect_x": 1.0,
        "pixel_aspect_y": 1.0,
    }
    entry.update(overrides)
    return entry


@pytest.fixture
def three_cameras_json(tmp_path: Path) -> Path:
    """cameras.json with three cameras: looking at +X, straight up, and across the seam."""
    path = tmp_path / "cameras.json"
    path.write_text(
        json.dumps(
            [
                camera_dict("Front", (90, 0, -90)),
                camera_dict("Zenith", (0, 0, 0), lens=20.0),
                camera_dict("Seam", (90, 0, 90), resolution_x=80, resolution_y=40),
            ]
        )
    )
    return path


# --------------------------------------------------------------------------- tiny models


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors gain nothing from threads, and on a shared 2-core machine torch's
    spinning workers made each UNet call ~8× slower; restored for other modules.
    Modules that run tiny models use it with ``pytest.mark.usefixtures``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random-weight AnimateDiff pipeline saved with ``save_pretrained``, built
    once per session (tests read it; one that changes files copies it first)."""
    from tiny_models import build_tiny_animatediff

    return build_tiny_animatediff(tmp_path_factory.mktemp("models") / "tiny-animatediff")


@pytest.fixture(scope="session")
def tiny_wan(tmp_path_factory) -> Path:
    """A tiny random-weight Wan 2.1 pipeline (``tests/tiny_wan.py``), built once per session."""
    from tiny_wan import build_tiny_wan

    return build_tiny_wan(tmp_path_factory.mktemp("models") / "tiny-wan")


@pytest.fixture(scope="module")
def backend(tiny_model):
    """The tiny AnimateDiff loaded through the real loader (4-frame windows, CPU), once per
    module. Modules of other families define their own ``backend``."""
    from engine.generate.loading import inspect_model, load_animatediff

    return load_animatediff(inspect_model(str(tiny_model)), window_frames=4, device="cpu")
