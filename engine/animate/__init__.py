"""Still equirect panorama → seamless looping 360° video (Generative Image Dynamics style).

- :mod:`.spectral` — spectral volumes (K temporal frequencies in hertz per pixel)
  ↔ motion textures that loop exactly; GID normalisation; ``.npz`` files.
- :mod:`.priors` — :class:`MotionPrior` (the interface a learned model plugs into) and
  the built-in :class:`ProceduralPrior`.
- :mod:`.warp` — the renderer: inverts the motion, samples backwards with a cubic
  B-spline, flows one way (wraps the seam, continues over poles).
- :mod:`.splat` — the former softmax-splatting renderer (the benchmark's baseline).
- :mod:`.measure` — sharpness, detail energy and shift measures shared by tests and bench.
- :mod:`.pipeline` — :func:`animate_panorama`, the job behind ``python -m engine animate``.
- :mod:`.command` — the CLI subcommand (standard library only at import).

Importing this package is instant: the library API is loaded on first use.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "animate_panorama": "pipeline",
    "render_loop": "pipeline",
    "LoopRenderer": "pipeline",
    "MotionPrior": "priors",
    "ProceduralPrior": "priors",
    "SpectralVolume": "spectral",
    "load_volume": "spectral",
    "save_volume": "spectral",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
