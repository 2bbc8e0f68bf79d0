"""Where Blender is installed on this machine, found without importing or running it.

The engine never imports bpy, yet its previews need the OCIO config Blender ships
(``<version>/datafiles/colormanagement/config.ocio``, see :mod:`engine.colour`). When the
user passes none, it is looked for, in this order:

1. the ``bpy`` module of this Python (the PyPI ``bpy`` package keeps ``<version>/`` beside
   its ``__init__``), located with :func:`importlib.util.find_spec`, which does not import it;
2. ``blender`` on ``PATH``, symlinks resolved: the release archive and the Windows
   installer keep ``<version>/`` beside the executable, Linux distributions in
   ``../share/blender/``, macOS bundles in ``../Resources/``;
3. the platform's usual install folders (Windows' Program Files and Steam, macOS'
   ``/Applications``, Linux's ``/usr/share/blender``, ``/opt/blender*``, the snap).

Within one place the newest Blender version wins (``5.0`` over ``4.2``); an earlier place
wins over a later one, so the Blender beside this Python comes first.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

#: A Blender version folder: ``4.2``, ``5.0``.
VERSION_FOLDER = re.compile(r"^(\d+)\.(\d+)$")
#: The OCIO config inside a version folder.
CONFIG_IN_VERSION = Path("datafiles", "colormanagement", "config.ocio")


def installed_ocio_config() -> Path | None:
    """The ``config.ocio`` of the first Blender found (see the module docstring), or ``None``."""
    for root in blender_roots():
        config = newest_config(root)
        if config is not None:
            return config
    return None


def newest_config(root: Path) -> Path | None:
    """The config of the newest version folder directly under ``root``, or ``None``."""
    try:
        children = list(root.iterdir())
    except OSError:
        return None
    versions = []
    for child in children:
        match = VERSION_FOLDER.match(child.name)
        if match and (child / CONFIG_IN_VERSION).is_file():
            versions.append(((int(match[1]), int(match[2])), child / CONFIG_IN_VERSION))
    return max(versions)[1].resolve() if versions else None


def blender_roots() -> Iterator[Path]:
    """Folders that may hold Blender's version folders, most likely first."""
    module = bpy_module_folder()
    if module is not None:
        yield module
    executable = shutil.which("blender")
    if executable is not None:
        yield from roots_beside_executable(Path(executable).resolve())
    yield from usual_install_roots()


def bpy_module_folder() -> Path | None:
    """The folder of this Python's ``bpy`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("bpy")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def roots_beside_executable(executable: Path) -> Iterator[Path]:
    """Where the version folders of the Blender at ``executable`` live, by layout."""
    folder = executable.parent
    yield folder  # release archive, Windows installer
    yield folder.parent / "share" / "blender"  # Linux distributions (/usr/bin → /usr/share)
    yield folder.parent / "Resources"  # macOS bundle (Contents/MacOS → Contents/Resources)


def usual_install_roots() -> Iterator[Path]:
    """The platform's usual Blender install folders, newest-named first within a pattern."""
    if sys.platform == "win32":
        for variable in ("ProgramFiles", "ProgramFiles(x86)"):
            base = os.environ.get(variable)
            if base:
                yield from _sorted_glob(Path(base, "Blender Foundation"), "Blender*")
                yield Path(base, "Steam", "steamapps", "common", "Blender")
    elif sys.platform == "darwin":
        for applications in (Path("/Applications"), Path.home() / "Applications"):
            for bundle in _sorted_glob(applications, "Blender*.app"):
                yield bundle / "Contents" / "Resources"
    else:
        yield Path("/usr/share/blender")
        yield Path("/usr/local/share/blender")
        yield Path("/snap/blender/current")
        yield from _sorted_glob(Path("/opt"), "blender*")


def _sorted_glob(folder: Path, pattern: str) -> list[Path]:
    try:
        return sorted(folder.glob(pattern), reverse=True)
    except OSError:
        return []
