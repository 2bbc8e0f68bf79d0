"""Blender glue for PanoLoop: bpy only, never torch (the engine runs in its own process).

Rooms:

- ``preferences`` — the add-on preferences and *Set Up Engine*; ``setup_engine`` — the
  install plan per platform (standard library only, run as a script);
- ``properties`` — ``scene.panoloop`` and the window manager's job display;
- ``engine_env`` — where the engine's Python, the jobs and the outputs live;
- ``scene_io`` — scene cameras → ``cameras.json``; the one camera-scope rule;
- ``commands`` — scene settings → engine command lines (animate, generate, serve);
- ``plans`` — multicam and VR export, each one plan of steps, run in place or by the runner;
- ``runner`` — the one launcher: subprocesses, a reader thread, the main-thread timer;
- ``world`` — an output folder → the looping World texture, PanoLoop's Mapping node;
- ``render`` — Blender renders of every camera and in 360°;
- ``background`` — the script a background Blender runs for a plan's render step.

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
