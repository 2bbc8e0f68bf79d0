"""Blender glue for PanoLoop: bpy only, never torch (the engine runs in its own process).

Rooms: ``preferences`` (the add-on preferences), ``properties`` (``scene.panoloop`` and
the window manager's job display), ``engine_env`` (where the engine's Python and the
outputs live, how a worker is started), ``runner`` (the worker subprocess, its reader
thread and the main-thread timer), ``world`` (an output folder → a looping World
texture), ``jobs`` (scene settings → engine command lines), ``scene_io`` (scene cameras
→ ``cameras.json``), ``render`` (Blender renders of every camera and in 360°),
``background`` (the script a background Blender runs), ``package`` (multicam and VR
export).

``contract`` is :mod:`engine.contract`, the one module of the engine Blender imports
(standard library only): output names, manifests, safe names, the atomic folder and
the one error type, :class:`~engine.contract.PanoLoopError`.
"""

import sys

try:  # the extension package: the engine is a sibling package
    from ..engine import contract
except ImportError:  # blender_addon on sys.path by itself (tests, the background script)
    from engine import contract

# ``from .contract import NAME`` in this package's modules reads the engine's module.
sys.modules[f"{__name__}.contract"] = contract

__all__ = ["contract"]
