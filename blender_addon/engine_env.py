"""Where PanoLoop's files live and how the engine's own Python is started.

The engine never runs inside Blender: it runs in a separate Python (the ``engine_python``
preference), started with the extension folder on ``PYTHONPATH`` so that interpreter
imports the very ``engine`` package shipped in the extension zip. Nothing is written
inside the extension folder: the default environment, jobs and outputs live in the
extension's user folder (``bpy.utils.extension_path_user``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import bpy

from . import contract

#: The extension's root package (``bl_ext.<repo>.panoloop`` when installed as an extension).
ADDON_PACKAGE = __package__.rpartition(".")[0]
#: The extension folder: it holds ``engine/`` next to ``blender_addon/``.
EXTENSION_DIR = Path(__file__).resolve().parents[1]
#: Sub-folders of the extension user folder.
ENV_DIR_NAME = "engine-env"
OUTPUTS_DIR_NAME = "outputs"
#: Default output folder of a saved .blend file: ``panoloop/`` beside it.
BLEND_OUTPUT_DIR = "//panoloop"
JOBS_DIR_NAME = "jobs"
#: The last device check (``python -m engine device --record``), shown in the preferences.
ENGINE_CHECK_NAME = "engine-check.json"


#: The add-on's one error type: a failure the user can act on, ``fix`` says where
#: (shown under the error). It is the contract's, so the engine's refusals read alike.
AddonError = contract.PanoLoopError


def registered() -> bool:
    """True inside the enabled extension; False for library use (tests, scripts that put
    ``blender_addon`` on ``sys.path`` themselves)."""
    return bool(ADDON_PACKAGE) and ADDON_PACKAGE in bpy.context.preferences.addons


def user_dir() -> Path:
    """The extension's user folder (created on first use); never the extension folder.

    Library use without the extension gets a ``panoloop`` folder in the temp folder.
    """
    if not registered():
        folder = Path(tempfile.gettempdir()) / "panoloop-library"
        folder.mkdir(exist_ok=True)
        return folder
    return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, create=True))


def preferences() -> Any:
    """The add-on preferences (``PanoLoopPreferences``)."""
    return bpy.context.preferences.addons[ADDON_PACKAGE].preferences


def venv_python(env_dir: Path) -> Path:
    """The interpreter inside a virtual environment folder, per platform."""
    if sys.platform == "win32":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def default_env_dir() -> Path:
    return user_dir() / ENV_DIR_NAME


def engine_python() -> Path:
    """The Python that runs the engine: the preference, else PanoLoop's own environment.

    Library use without the extension runs the engine in this Python when it can.
    """
    if not registered() and importlib.util.find_spec("engine") is not None:
        return Path(sys.executable)
    chosen = preferences().engine_python.strip()
    if chosen:
        return Path(bpy.path.abspath(chosen))
    return venv_python(default_env_dir())


def checked_engine_python() -> Path:
    """:func:`engine_python`, refusing one that does not exist with the fix to apply."""
    python = engine_python()
    if not python.is_file():
        raise AddonError(
            f"engine Python not found: {python}",
            "Preferences > Add-ons > PanoLoop: click Set Up Engine, "
            "or set Engine Python to a Python with the engine's requirements",
        )
    return python


def engine_check_path() -> Path:
    return user_dir() / ENGINE_CHECK_NAME


_check_cache: dict[str, Any] = {"key": None, "value": None}


def engine_check() -> dict[str, Any] | None:
    """The last device check of the engine Python in use, or None if it was not checked.

    Read from :func:`engine_check_path` (written by *Set Up Engine* and *Check Engine*)
    and cached by modification time: the preferences draw this on every redraw.
    """
    path = engine_check_path()
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError:
        return None
    if _check_cache["key"] != key:
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            value = None
        _check_cache.update(key=key, value=value if isinstance(value, dict) else None)
    value = _check_cache["value"]
    if value is None or not same_python(str(value.get("python", "")), engine_python()):
        return None  # a check of another interpreter says nothing about this one
    return value


def same_python(recorded: str, python: Path) -> bool:
    """Whether a check's ``sys.executable`` is this interpreter path (links not followed:
    every virtual environment's python links to the same base interpreter)."""
    norm = os.path.normcase
    return bool(recorded) and norm(os.path.abspath(recorded)) == norm(os.path.abspath(python))


def output_root() -> Path:
    """Folder receiving finished outputs (created on first use).

    The Output Folder preference when set; else ``panoloop/`` next to the saved .blend
    (Blender's ``//panoloop/``); else ``outputs/`` in the extension's user folder.
    """
    chosen = preferences().output_dir.strip() if registered() else ""
    if chosen:
        root = Path(bpy.path.abspath(chosen))
    elif bpy.data.filepath:
        root = Path(bpy.path.abspath(BLEND_OUTPUT_DIR))
    else:
        root = user_dir() / OUTPUTS_DIR_NAME
    fix = "set Output Folder in Preferences > Add-ons > PanoLoop to a folder you can write"
    if root.exists() and not root.is_dir():
        raise AddonError(f"output folder {root} is a file, not a folder", fix)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AddonError(
            f"cannot create output folder {root}: {exc.strerror or exc}", fix
        ) from None
    return root


def output_root_text() -> str:
    """Where outputs will go, for the panel (computed without creating anything)."""
    chosen = preferences().output_dir.strip() if registered() else ""
    if chosen:
        return chosen
    if bpy.data.filepath:
        return f"{BLEND_OUTPUT_DIR}/"
    return str(user_dir() / OUTPUTS_DIR_NAME)


def jobs_root() -> Path:
    root = user_dir() / JOBS_DIR_NAME
    root.mkdir(parents=True, exist_ok=True)
    return root


def worker_environment(*, online: bool) -> dict[str, str]:
    """Environment of a worker: the extension on PYTHONPATH, hub offline unless allowed.

    ``HF_HUB_OFFLINE`` is read when huggingface_hub is imported, so it must be set in
    the worker's environment; it follows Blender's Online Access setting.
    """
    env = dict(os.environ)
    # Blender's own Python settings must not leak into another interpreter.
    for name in ("PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE"):
        env.pop(name, None)
    paths = [str(EXTENSION_DIR)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    # Caches go to the user folder: never write inside the extension folder.
    caches = user_dir() / "cache"
    env["PYTHONPYCACHEPREFIX"] = str(caches / "pycache")
    env.setdefault("NUMBA_CACHE_DIR", str(caches / "numba"))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    if online:
        env.pop("HF_HUB_OFFLINE", None)
    else:
        env["HF_HUB_OFFLINE"] = "1"
    return env


#: The views the engine's previews offer; another scene view falls back to Blender's default.
PREVIEW_VIEWS = ("AgX", "Filmic", "Standard")


def preview_args(scene: Any) -> list[str]:
    """``--ocio-config``, ``--view`` and ``--exposure`` so the engine's 8-bit previews look
    as the scene shows HDR: Blender's own OCIO config (the engine has no bpy to find it)
    and the scene's view transform and exposure."""
    # system_resource resolves folders only (a file path gives ""): join the file on.
    config = Path(bpy.utils.system_resource("DATAFILES", path="colormanagement")) / "config.ocio"
    view = scene.view_settings.view_transform
    return [
        "--ocio-config", str(config),
        "--view", view if view in PREVIEW_VIEWS else "AgX",
        "--exposure", repr(float(scene.view_settings.exposure)),
    ]  # fmt: skip
