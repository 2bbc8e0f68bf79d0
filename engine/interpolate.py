"""Loop-aware frame interpolation: a loop of N frames → M frames, by optical flow both ways.

A loop has no repeated frame: input frame N−1 is followed by input frame 0. Output frame
k shows the instant ``k · N / M`` in input frames (output frame 0 *is* input frame 0),
so the time between any two output frames is the same, the pair last → first included:
it is interpolated like every other pair and the loop point stays seamless.

Between input frames i and j = (i + 1) mod N at a fraction a ∈ (0, 1) of the way, both
frames are warped to the instant a along dense optical flow (OpenCV DIS) computed both
ways, i → j and j → i, and cross-faded with weights 1 − a and a. Motion is taken as
linear between the two frames: a pixel at x at the instant a came from
``x − a · flow_ij(x)`` in frame i and goes to ``x − (1 − a) · flow_ji(x)`` in frame j.

Frames are equirect panoramas: columns wrap at the 360° seam (flow is computed on frames
padded with wrapped columns, and warping reads across the seam); rows clamp at the poles.
Flow is smooth, so it is computed at most ``FLOW_WIDTH`` pixels wide and scaled up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import cv2
import numpy as np

#: Widest frame the flow is computed at (pixels); wider frames are flowed downscaled.
FLOW_WIDTH = 1024
#: Wrapped columns on each side while computing flow, as a fraction of the (flow) width,
#: so motion across the 360° seam is found like motion anywhere else.
SEAM_PAD = 1 / 8
#: Columns of wrapped padding for warping (bilinear reads one column past the edge).
WARP_PAD = 2


def output_instants(count_in: int, count_out: int) -> Iterator[tuple[int, float]]:
    """(input frame i, fraction a toward frame i + 1) of every output frame, in order.

    Exact integer arithmetic: output frame k sits at ``k · count_in / count_out``.
    """
    for k in range(count_out):
        i, rest = divmod(k * count_in, count_out)
        yield i, rest / count_out


def interpolate_loop(
    frames: Sequence[np.ndarray],
    count: int,
    *,
    flow_width: int = FLOW_WIDTH,
    step: Callable[[int, int], None] | None = None,
) -> list[np.ndarray]:
    """A loop of ``len(frames)`` frames (H, W, 3) → ``count`` frames over the same time.

    Frames that fall exactly on an input frame are that frame (not a copy); the others
    are interpolated and keep the input's dtype (uint8 rounded, float as is).
    ``step(k, count)`` is called before each output frame (progress, cancellation).
    """
    n = len(frames)
    if n == 0 or count < 1:
        raise ValueError(f"need frames and a positive count, got {n} frames → {count}")
    out: list[np.ndarray] = []
    pair: tuple[int, np.ndarray, np.ndarray] | None = None
    for k, (i, a) in enumerate(output_instants(n, count)):
        if step is not None:
            step(k + 1, count)
        if a == 0:
            out.append(frames[i])
            continue
        j = (i + 1) % n
        if pair is None or pair[0] != i:  # instants only move forward: one pair at a time
            pair = (i, *pair_flows(frames[i], frames[j], flow_width=flow_width))
        _, flow_ij, flow_ji = pair
        out.append(in_between(frames[i], frames[j], flow_ij, flow_ji, a))
    return out


def pair_flows(
    first: np.ndarray, second: np.ndarray, *, flow_width: int = FLOW_WIDTH
) -> tuple[np.ndarray, np.ndarray]:
    """Dense flow first → second and second → first, (H, W, 2) float32 pixels (dx, dy)."""
    height, width = first.shape[:2]
    scale = min(1.0, flow_width / width)
    a, b = (_flow_grey(f, scale) for f in (first, second))
    pad = max(4, int(round(a.shape[1] * SEAM_PAD)))
    a, b = (
        np.ascontiguousarray(np.concatenate([g[:, -pad:], g, g[:, :pad]], axis=1)) for g in (a, b)
    )
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flows = []
    for src, dst in ((a, b), (b, a)):
        flow = dis.calc(src, dst, None)[:, pad:-pad]
        if scale < 1.0:
            flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR) / scale
        flows.append(np.ascontiguousarray(flow, dtype=np.float32))
    return flows[0], flows[1]


def in_between(
    first: np.ndarray,
    second: np.ndarray,
    flow_ij: np.ndarray,
    flow_ji: np.ndarray,
    a: float,
) -> np.ndarray:
    """The frame a of the way from ``first`` to ``second`` (0 < a < 1), same dtype."""
    early = warp_wrapped(first, flow_ij, -a)
    late = warp_wrapped(second, flow_ji, -(1.0 - a))
    mixed = (1.0 - a) * early + a * late
    if first.dtype == np.uint8:
        return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return mixed.astype(first.dtype)


def warp_wrapped(frame: np.ndarray, flow: np.ndarray, t: float) -> np.ndarray:
    """float32 frame sampled at ``x + t · flow(x)``: columns wrap, rows clamp."""
    height, width = frame.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    map_x = np.mod(xs + t * flow[..., 0], width) + WARP_PAD
    map_y = np.clip(ys + t * flow[..., 1], 0, height - 1)
    source = np.concatenate([frame[:, -WARP_PAD:], frame, frame[:, :WARP_PAD]], axis=1)
    source = np.ascontiguousarray(source, dtype=np.float32)
    return cv2.remap(
        source,
        map_x.astype(np.float32),
        map_y.astype(np.float32),
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _flow_grey(frame: np.ndarray, scale: float) -> np.ndarray:
    """8-bit grey levels for DIS (float frames: display range 0…1 clipped)."""
    if frame.dtype != np.uint8:
        frame = np.clip(np.asarray(frame, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return grey
