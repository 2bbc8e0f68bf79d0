"""The ring latent and the index views that read and write it.

The whole equirect video lives in one latent of shape (C, F, H, W): channels, frames,
latent rows (row 0 = +Z, the zenith) and latent columns (the centre column faces +X,
the wrap seam faces −X), exactly the pixel convention of :mod:`engine.projection`
scaled down by the VAE factor. Columns wrap modulo W (the 360° seam) and frames wrap
modulo F (the loop point), so both are denoised like interior pixels. Latitude does
not wrap.

Every model call sees a :class:`View`: a list of frame indices and a list of latent
cells (flat ``row·W + col``) arranged as an h×w window. A shifted window is a
rectangle sliced modulo W and F; a sphere view is a perspective view whose pixels
are latent cells picked **nearest-neighbour**, never interpolated, so a gathered
view holds exact copies of latent values and unit-variance Gaussian noise stays
unit-variance Gaussian. When two view pixels land on the same cell only one of them
(the one nearest the cell centre) writes it back: gather → scatter is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..projection import direction_to_equirect


@dataclass(frozen=True)
class View:
    """One model call's footprint in the ring latent.

    ``frames`` (Fw,) frame indices modulo F; ``cells`` (h·w,) flat latent cells
    ``row·W + col`` in view raster order (row 0 at the top); ``keep`` (h·w,) which
    view pixels write back (False for the duplicates of a cell); ``kind`` one of
    ``"window"``, ``"sphere"``, ``"camera"``, ``"fill"``.
    """

    frames: np.ndarray
    cells: np.ndarray
    keep: np.ndarray
    height: int
    width: int
    kind: str = "window"

    @property
    def pixels(self) -> int:
        """Latent pixels the model processes for this view (frames × h × w)."""
        return len(self.frames) * self.height * self.width


def window_view(
    frame0: int,
    row0: int,
    col0: int,
    size: tuple[int, int, int],
    grid: tuple[int, int, int],
    kind: str = "window",
    write_rows: tuple[int, int] | None = None,
) -> View:
    """A rectangular window of ``size`` (frames, rows, cols) at (frame0, row0, col0).

    Frames and columns wrap modulo the latent ``grid`` (F, H, W); rows must lie inside
    [0, H) (latitude does not wrap). ``write_rows`` (first, count), counted from the
    window's top, limits the rows written back; the others are context only.
    """
    fw, h, w = size
    F, H, W = grid
    if row0 < 0 or row0 + h > H:
        raise ValueError(f"window rows {row0}..{row0 + h} leave the latent's {H} rows")
    frames = (frame0 + np.arange(fw)) % F
    rows = row0 + np.arange(h)
    cols = (col0 + np.arange(w)) % W
    cells = (rows[:, None] * W + cols[None, :]).reshape(-1)
    first, count = write_rows if write_rows is not None else (0, h)
    writes = (np.arange(h) >= first) & (np.arange(h) < first + count)
    keep = np.repeat(writes, w)
    return View(frames, cells, keep, h, w, kind)


def nearest_view(
    directions: np.ndarray, frames: np.ndarray, grid: tuple[int, int, int], kind: str
) -> View:
    """A perspective view whose pixels are the latent cells their rays hit (nearest).

    ``directions`` (h, w, 3) world rays (Z up, centre +X); ``grid`` (F, H, W).
    Of several view pixels on one cell, the one whose ray lands nearest the cell centre
    keeps the right to write it back.
    """
    _, H, W = grid
    h, w = directions.shape[:2]
    col, row = direction_to_equirect(directions.reshape(-1, 3), W, H)
    ci = np.floor(col).astype(np.int64) % W
    ri = np.clip(np.floor(row).astype(np.int64), 0, H - 1)
    cells = ri * W + ci
    dist = (col - ci - 0.5) ** 2 + (row - ri - 0.5) ** 2
    order = np.lexsort((dist, cells))
    first = np.ones(len(order), dtype=bool)
    first[1:] = cells[order][1:] != cells[order][:-1]
    keep = np.zeros(len(cells), dtype=bool)
    keep[order[first]] = True
    return View(np.asarray(frames, dtype=np.int64), cells, keep, h, w, kind)


def gather(latent: torch.Tensor, view: View) -> torch.Tensor:
    """Copy the view's cells out of ``latent`` (C, F, H, W) → (C, Fw, h, w)."""
    C, F, H, W = latent.shape
    flat = latent.reshape(C, F, H * W)
    frames = torch.as_tensor(view.frames, device=latent.device)
    cells = torch.as_tensor(view.cells, device=latent.device)
    picked = flat.index_select(1, frames).index_select(2, cells)
    return picked.reshape(C, len(view.frames), view.height, view.width)


def scatter(latent: torch.Tensor, view: View, values: torch.Tensor) -> None:
    """Write ``values`` (C, Fw, h, w) back into the view's kept cells of ``latent``, in place."""
    C, F, H, W = latent.shape
    flat = latent.view(C, F, H * W)
    keep = torch.as_tensor(view.keep, device=latent.device)
    cells = torch.as_tensor(view.cells, device=latent.device)[keep]
    frames = torch.as_tensor(view.frames, device=latent.device)
    src = values.reshape(C, len(view.frames), -1)[:, :, keep].to(latent.dtype)
    flat[:, frames[:, None], cells[None, :]] = src


def accumulate(
    total: torch.Tensor,
    weight: torch.Tensor,
    view: View,
    values: torch.Tensor,
    weights: torch.Tensor,
) -> None:
    """Add ``weights`` × ``values`` (C, Fw, h, w) into ``total`` (C, F, H·W) and ``weights``
    (Fw, h, w) into ``weight`` (F, H·W) at the view's cells, in place (for weighted means)."""
    C, F, HW = total.shape
    frames = torch.as_tensor(view.frames, device=total.device)
    cells = torch.as_tensor(view.cells, device=total.device)
    index = (frames[:, None] * HW + cells[None, :]).reshape(-1)
    w = weights.reshape(-1).to(total.dtype)
    total.view(C, F * HW).index_add_(1, index, values.reshape(C, -1).to(total.dtype) * w)
    weight.view(F * HW).index_add_(0, index, w)


def mark_written(written: torch.Tensor, view: View) -> None:
    """Set the (F, H·W) ``written`` mask on the cells ``view`` writes."""
    keep = torch.as_tensor(view.keep, device=written.device)
    cells = torch.as_tensor(view.cells, device=written.device)[keep]
    frames = torch.as_tensor(view.frames, device=written.device)
    written[frames[:, None], cells[None, :]] = True


def gather_mask(written: torch.Tensor, view: View) -> torch.Tensor:
    """The (Fw, h, w) part of an (F, H·W) mask under the view."""
    frames = torch.as_tensor(view.frames, device=written.device)
    cells = torch.as_tensor(view.cells, device=written.device)
    return (
        written.index_select(0, frames)
        .index_select(1, cells)
        .reshape(len(view.frames), view.height, view.width)
    )
