"""Previews as Blender shows them: scene-linear HDR → 8-bit sRGB through Blender's OCIO view.

Every 8-bit picture made from HDR frames (``panorama.mp4``, the 360 MP4, the WebXR video,
cubemap previews, multicam clips and the contact sheet) goes through one
:class:`DisplayTransform`: Blender's own view transform (AgX, Filmic or Standard on the
``sRGB`` display) evaluated by OpenColorIO from the ``config.ocio`` that Blender ships,
after an exposure in stops — the same chain as Blender's *Color Management* panel with
Look None and Gamma 1. Input is the config's ``scene_linear`` role (Linear Rec.709,
Blender's working space).

Where the config comes from (the engine never imports bpy): ``--ocio-config PATH``, else
the ``OCIO`` environment variable (OpenColorIO's own convention), else the config of a
Blender installed on this machine (:mod:`engine.blender_install`: the ``bpy`` module of
this Python, ``blender`` on ``PATH``, the usual install folders), else nothing. The add-on
passes its own Blender's ``datafiles/colormanagement/config.ocio``. Without a config AgX
and Filmic are refused with an error that says how to pass one (exit 2, nothing
written); ``Standard`` alone has a built-in fallback — the sRGB curve of clipped linear
values, which is exactly what Blender's Standard view computes — and the manifest says
so. Nothing tone-maps silently.

Speed: OpenColorIO's CPU processor takes about 0.2 CPU-seconds per 2048×1024 frame for
AgX, more than rendering the frame. The processor is therefore *baked*, once per view,
into a per-channel log2 shaper plus a 3-D lattice (the structure AgX itself has: an
``lg2`` allocation followed by a cube LUT), evaluated by OpenColorIO at every lattice
point, and applied by a compiled tetrahedral interpolation that releases the GIL. The
baked table agrees with OpenColorIO's exact processor to within one 8-bit level (tested,
and measured against Blender itself in ``tests/test_colour_blender.py``).
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import PyOpenColorIO
from numba import njit

from .blender_install import installed_ocio_config
from .errors import BadInput

#: The views every preview flag offers, as Blender names them on the sRGB display.
VIEWS = ("AgX", "Filmic", "Standard")
DEFAULT_VIEW = "AgX"
#: The display Blender uses by default, and the one our 8-bit sRGB previews are for.
DISPLAY = "sRGB"
#: Largest |exposure| accepted, in stops (±32 stops is 4·10⁹×, far past any HDR).
MAX_EXPOSURE = 32.0
#: Points per axis of the baked lattice: 65 keeps AgX within one 8-bit level of
#: OpenColorIO's exact processor (tests/test_colour.py measures it).
LATTICE_POINTS = 65
#: Probe range of the shaper, in stops of scene-linear value (2^-24 … 2^24).
PROBE_STOPS = (-24.0, 24.0)
#: Extra stops kept below the range where a view's output still changes.
SHAPER_MARGIN = 0.5
ENV_VAR = "OCIO"
HOW_TO_PASS = (
    "no Blender found on this machine (bpy module, blender on PATH, usual install folders); "
    "pass --ocio-config PATH to Blender's config.ocio (in Blender: "
    "bpy.utils.system_resource('DATAFILES', path='colormanagement/config.ocio')) "
    f"or set the {ENV_VAR} environment variable; --view Standard works without one"
)


# --------------------------------------------------------------------------- input checks


def check_view(view: str) -> str:
    """One of :data:`VIEWS` (Blender's spelling); :class:`BadInput` naming it otherwise."""
    if view not in VIEWS:
        raise BadInput(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    return view


def check_exposure(exposure: float) -> float:
    """Exposure in stops: finite, |exposure| ≤ :data:`MAX_EXPOSURE`."""
    if not math.isfinite(exposure) or abs(exposure) > MAX_EXPOSURE:
        raise BadInput(
            f"exposure must be a finite number of stops within ±{MAX_EXPOSURE:g}, got {exposure}"
        )
    return float(exposure)


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The OCIO config to use: ``explicit``, else ``$OCIO``, else an installed Blender's
    (:func:`engine.blender_install.installed_ocio_config`), else ``None``.

    A path that is given but is not a file is refused (:class:`BadInput` naming it).
    """
    for where, value in (("--ocio-config", explicit), (ENV_VAR, os.environ.get(ENV_VAR))):
        if value in (None, ""):
            continue
        path = Path(value)
        if not path.is_file():
            raise BadInput(f"OCIO config from {where} not found: {path}")
        return path.resolve()
    return installed_ocio_config()


# --------------------------------------------------------------------------- the transform


@dataclass(frozen=True)
class DisplayTransform:
    """Scene-linear float frames → 8-bit display frames, as Blender shows them.

    ``config`` is the OCIO config file (``None`` only for the built-in Standard view);
    ``exposure`` in stops is applied before the view, like Blender's Exposure.
    uint8 frames (already display-referred) pass through; uint16 are scaled to 8 bits.
    """

    view: str = DEFAULT_VIEW
    exposure: float = 0.0
    config: Path | None = None

    def to_uint8(
        self, frame: np.ndarray, out: np.ndarray | None = None, threads: int | None = None
    ) -> np.ndarray:
        """The (H, W, 3) uint8 sRGB picture of ``frame`` (``threads``: default every core)."""
        if frame.dtype == np.uint8:
            return frame
        if frame.dtype == np.uint16:
            return (frame.astype(np.uint32) * 255 // 65535).astype(np.uint8)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) frame, got shape {frame.shape}")
        table = baked_view(self.config, self.view)
        if out is None:
            out = np.empty(frame.shape, dtype=np.uint8)
        source = np.ascontiguousarray(frame, dtype=np.float32)
        _apply_bands(table, source, out, self.exposure, threads)
        return out

    def describe(self) -> dict[str, object]:
        """What the manifest records about the previews' colour."""
        return {
            "view": self.view,
            "display": DISPLAY,
            "exposure": self.exposure,
            "ocio_config": str(self.config) if self.config else None,
            "transform": "opencolorio" if self.config else "built-in sRGB (Standard)",
        }


def display_transform(
    view: str = DEFAULT_VIEW,
    exposure: float = 0.0,
    config: str | os.PathLike[str] | None = None,
    *,
    needed: bool = True,
) -> DisplayTransform:
    """Check the preview settings and resolve the config (see module docstring).

    ``needed`` = False (8-bit input: no tone mapping happens) skips the config lookup's
    refusal. Raises :class:`BadInput` before anything is written.
    """
    view = check_view(view)
    exposure = check_exposure(exposure)
    path = find_config(config)
    if path is not None:
        _load_config(str(path))  # a broken config is refused now, not mid-job
    elif view != "Standard" and needed:
        raise BadInput(f"no OCIO config for the {view} view: {HOW_TO_PASS}")
    return DisplayTransform(view, exposure, path)


# --------------------------------------------------------------------------- baking


@dataclass(frozen=True)
class BakedView:
    """A view as a log2 shaper (``lo``, ``hi`` stops) and an (N, N, N, 3) lattice in [0, 1]."""

    lo: float
    hi: float
    lattice: np.ndarray


_BAKE_LOCK = threading.Lock()


def baked_view(config: Path | None, view: str) -> BakedView:
    """The baked table of ``view`` from ``config`` (cached per process; thread-safe)."""
    with _BAKE_LOCK:
        return _bake(str(config) if config else None, view)


@lru_cache(maxsize=8)
def _bake(config: str | None, view: str) -> BakedView:
    evaluate = _ocio_evaluator(config, view) if config else _builtin_standard
    lo, hi = _active_range(evaluate)
    stops = np.linspace(lo, hi, LATTICE_POINTS)
    values = np.exp2(stops).astype(np.float32)
    r, g, b = np.meshgrid(values, values, values, indexing="ij")
    points = np.stack([r, g, b], axis=-1).reshape(-1, 3)
    lattice = evaluate(points).reshape(LATTICE_POINTS, LATTICE_POINTS, LATTICE_POINTS, 3)
    return BakedView(float(lo), float(hi), np.ascontiguousarray(lattice, dtype=np.float32))


def _active_range(evaluate) -> tuple[float, float]:
    """The stops between which a view's displayed output (clamped to [0, 1]) still
    changes, plus a margin, probed along greys and along each primary.

    Below and above it the view is flat (AgX's and Filmic's log allocation clamps;
    Standard clips at 1.0), so the lattice spends its points where the picture changes.
    The primaries matter where a view mixes channels before its curve (a bright red
    still tints the blue output of Filmic long after a grey has turned white).
    """
    stops = np.arange(PROBE_STOPS[0], PROBE_STOPS[1] + 1e-9, 1 / 16)
    ramp = np.exp2(stops).astype(np.float32)
    lo, hi = PROBE_STOPS[1], PROBE_STOPS[0]
    for direction in np.eye(3, dtype=np.float32)[[0, 1, 2]].tolist() + [[1.0, 1.0, 1.0]]:
        shown = np.clip(evaluate(ramp[:, None] * np.float32(direction)), 0.0, 1.0)
        changing = np.flatnonzero(np.any(np.abs(np.diff(shown, axis=0)) > 1e-6, axis=1))
        if changing.size:
            lo = min(lo, stops[changing[0]])
            hi = max(hi, stops[changing[-1] + 1])
    if lo >= hi:
        return PROBE_STOPS
    # No margin at the top: there the output is flat from ``hi`` on (a clip, or the view's
    # white), and clamping to a lattice node exactly there keeps the kink sharp.
    return max(lo - SHAPER_MARGIN, PROBE_STOPS[0]), hi


def _ocio_evaluator(config: str, view: str):
    """A function (N, 3) float32 scene-linear → (N, 3) display values by OpenColorIO."""
    cfg = _load_config(config)
    if view not in cfg.getViews(DISPLAY):
        raise BadInput(f"OCIO config {config} has no view {view!r} on display {DISPLAY!r}")
    processor = cfg.getProcessor(
        PyOpenColorIO.ROLE_SCENE_LINEAR, DISPLAY, view, PyOpenColorIO.TRANSFORM_DIR_FORWARD
    )
    cpu = processor.getDefaultCPUProcessor()

    def evaluate(rgb: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(rgb, dtype=np.float32).copy()
        cpu.applyRGB(pixels)
        return pixels

    return evaluate


@lru_cache(maxsize=4)
def _load_config(config: str):
    try:
        cfg = PyOpenColorIO.Config.CreateFromFile(config)
        cfg.validate()
    except Exception as exc:  # OCIO raises its own Exception type for any parse error
        raise BadInput(f"OCIO config {config} cannot be read: {exc}") from None
    if DISPLAY not in cfg.getDisplays():
        raise BadInput(f"OCIO config {config} has no {DISPLAY!r} display")
    return cfg


def _builtin_standard(rgb: np.ndarray) -> np.ndarray:
    """Blender's Standard view without a config: linear clipped to [0, 1], then sRGB."""
    linear = np.clip(rgb.astype(np.float64), 0.0, 1.0)
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    return srgb.astype(np.float32)


def exact_to_uint8(config: Path, view: str, frame: np.ndarray, exposure: float = 0.0):
    """OpenColorIO's own processor on every pixel (slow; the reference the bake is tested
    against). Rounds like Blender's byte conversion: ``v·255 + 0.5`` after clamping."""
    scaled = np.ascontiguousarray(frame, dtype=np.float32) * np.float32(2.0**exposure)
    shown = _ocio_evaluator(str(config), view)(scaled.reshape(-1, 3)).reshape(frame.shape)
    return (np.clip(shown, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------- applying


#: Rows per task when a frame is split among threads.
BAND_ROWS = 64


@lru_cache(maxsize=16)
def shaper_table(lo: float, hi: float, points: int) -> np.ndarray:
    """Lattice position of every float32 whose low 16 bits are zero, indexed by its high
    16 bits (sign, exponent and 7 mantissa bits), for a lattice of ``points`` per axis
    spanning ``lo``…``hi`` stops. In between, positions are interpolated linearly on the
    low bits — 128 segments per octave, within 2·10⁻⁵ stops of log2. Saves three ``log2``
    calls per pixel, which cost more than the lattice lookup itself.
    Negative numbers, zero and NaN map far below 0 (black after clamping); +inf far above.
    """
    high = np.arange(65537, dtype=np.uint64)
    bits = (np.minimum(high, 65535) << np.uint64(16)).astype(np.uint32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        values = bits.view(np.float32).astype(np.float64)
        stops = np.log2(values)
    stops = np.where(np.isnan(stops) | (high >= 0x8000), -1e9, stops)
    stops = np.where(np.isposinf(values[:]) & (high < 0x8000), 1e9, stops)
    stops[65536] = stops[65535]
    return ((stops - lo) * ((points - 1) / (hi - lo))).astype(np.float32)


def _apply_bands(
    table: BakedView, frame: np.ndarray, out: np.ndarray, exposure: float, threads: int | None
) -> None:
    height = frame.shape[0]
    points = table.lattice.shape[0]
    shaper = shaper_table(table.lo, table.hi, points)
    shift = np.float32(exposure * (points - 1) / (table.hi - table.lo))
    bits = frame.view(np.uint32)
    threads = min(threads or os.cpu_count() or 1, max(1, height // BAND_ROWS))
    if threads == 1:
        _tetrahedral(bits, out, table.lattice, shaper, shift, 0, height)
        return
    bounds = np.linspace(0, height, threads + 1).astype(int)
    with ThreadPoolExecutor(threads, thread_name_prefix="panoloop-tone") as pool:
        tasks = [
            pool.submit(_tetrahedral, bits, out, table.lattice, shaper, shift, a, b)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        for task in tasks:
            task.result()


@njit(cache=True, nogil=True)
def _position(bits, shaper, shift, last):
    """Shaper: a float32's bits → its position on a lattice axis, clamped to [0, last]."""
    high = bits >> 16
    low = np.float32(bits & 0xFFFF) * np.float32(1.0 / 65536.0)
    a = shaper[high]
    position = a + (shaper[high + 1] - a) * low + shift
    if not position > 0.0:  # also catches the NaN of -1e9 + inf-like mixes
        return np.float32(0.0)
    if position > last:
        return np.float32(last)
    return position


@njit(cache=True, nogil=True)
def _tetrahedral(bits, out, lattice, shaper, shift, row0, row1):
    """Tetrahedral interpolation of ``lattice`` at each pixel's shaped coordinates (rows
    ``row0``–``row1``), written as 8-bit with round-half-up (Blender's byte rounding).

    The cube around the point is cut into six tetrahedra by the order of the fractions;
    the point's value is the one along the path c000 → a → b → c111 of its tetrahedron.
    """
    last = np.float32(lattice.shape[0] - 1)
    width = bits.shape[1]
    for y in range(row0, row1):
        for x in range(width):
            pr = _position(bits[y, x, 0], shaper, shift, last)
            pg = _position(bits[y, x, 1], shaper, shift, last)
            pb = _position(bits[y, x, 2], shaper, shift, last)
            ir = min(int(pr), lattice.shape[0] - 2)
            ig = min(int(pg), lattice.shape[0] - 2)
            ib = min(int(pb), lattice.shape[0] - 2)
            fr, fg, fb = pr - ir, pg - ig, pb - ib
            # (a, b): the two middle corners as offsets; (w1, w2, w3): sorted fractions.
            if fr >= fg:
                if fg >= fb:
                    ar, ag, ab, br, bg, bb, w1, w2, w3 = 1, 0, 0, 1, 1, 0, fr, fg, fb
                elif fr >= fb:
                    ar, ag, ab, br, bg, bb, w1, w2, w3 = 1, 0, 0, 1, 0, 1, fr, fb, fg
                else:
                    ar, ag, ab, br, bg, bb, w1, w2, w3 = 0, 0, 1, 1, 0, 1, fb, fr, fg
            elif fb >= fg:
                ar, ag, ab, br, bg, bb, w1, w2, w3 = 0, 0, 1, 0, 1, 1, fb, fg, fr
            elif fb >= fr:
                ar, ag, ab, br, bg, bb, w1, w2, w3 = 0, 1, 0, 0, 1, 1, fg, fb, fr
            else:
                ar, ag, ab, br, bg, bb, w1, w2, w3 = 0, 1, 0, 1, 1, 0, fg, fr, fb
            for c in range(3):
                c000 = lattice[ir, ig, ib, c]
                ca = lattice[ir + ar, ig + ag, ib + ab, c]
                cb = lattice[ir + br, ig + bg, ib + bb, c]
                c111 = lattice[ir + 1, ig + 1, ib + 1, c]
                v = c000 + w1 * (ca - c000) + w2 * (cb - ca) + w3 * (c111 - cb)
                level = v * 255.0 + 0.5
                if level < 0.0:
                    level = 0.0
                elif level > 255.0:
                    level = 255.0
                out[y, x, c] = np.uint8(level)
