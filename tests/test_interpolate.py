"""Loop-aware frame interpolation (engine.interpolate): behaviour on known motion.

A smooth random texture that wraps in longitude slides right by a fixed step per frame
and, over the loop, goes exactly once around the 360° ring, so frame N would be frame 0.
The truth of every in-between instant is the same texture shifted by a fractional step
(drawn by the same band-limited formula), so "lands halfway" is measured, not assumed.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.interpolate import interpolate_loop, output_instants

HEIGHT, WIDTH = 48, 192
LOOP = 12  # input frames: 16 px per frame, once around the ring (8 px at half width)


def texture(shift: float, seed: int = 0) -> np.ndarray:
    """A smooth RGB texture (H, W, 3) uint8, periodic in columns, shifted right by ``shift`` px."""
    rng = np.random.default_rng(seed)
    y = (np.arange(HEIGHT)[:, None] + 0.5) / HEIGHT
    x = (np.arange(WIDTH)[None, :] + 0.5 - shift) / WIDTH
    image = np.zeros((HEIGHT, WIDTH, 3))
    for _ in range(12):
        kx, ky = rng.integers(1, 6), rng.uniform(0.5, 3)
        phase, amp = rng.uniform(0, 2 * np.pi, 2), rng.uniform(20, 40, 3)
        wave = np.sin(2 * np.pi * kx * x + phase[0]) * np.cos(2 * np.pi * ky * y + phase[1])
        image += wave[..., None] * amp / 3
    return np.clip(128 + image, 0, 255).astype(np.uint8)


def loop_frames(count: int) -> list[np.ndarray]:
    return [texture(k * WIDTH / count) for k in range(count)]


def error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


def test_output_instants_are_evenly_spaced_and_start_on_frame_zero():
    assert list(output_instants(4, 8)) == [(0, 0.0), (0, 0.5), (1, 0.0), (1, 0.5),
                                           (2, 0.0), (2, 0.5), (3, 0.0), (3, 0.5)]  # fmt: skip
    instants = [i + a for i, a in output_instants(8, 30)]  # 8 → 30 fps: 3.75 per frame
    assert instants[0] == 0 and np.allclose(np.diff(instants), 8 / 30)
    assert instants[-1] < 8  # the last output frame lies before the loop point


def test_same_count_returns_the_frames_themselves():
    frames = loop_frames(4)
    out = interpolate_loop(frames, 4)
    assert all(o is f for o, f in zip(out, frames, strict=True))


def test_in_between_frames_land_halfway_and_the_loop_point_is_like_any_pair():
    """Behaviour: every interpolated frame (the last → first pair included) matches the
    texture at its true fractional position far better than a cross-fade would, and the
    jump across the loop point is like every other jump."""
    frames = loop_frames(LOOP)
    out = interpolate_loop(frames, 3 * LOOP)
    assert len(out) == 3 * LOOP
    for k, frame in enumerate(out):
        truth = texture(k * WIDTH / (3 * LOOP))
        i, a = divmod(k, 3)
        if a == 0:
            assert frame is frames[i]
            continue
        fade = ((1 - a / 3) * frames[i] + a / 3 * frames[(i + 1) % LOOP]).astype(np.uint8)
        assert error(frame, truth) < 1.0, k  # grey levels out of 255
        assert error(frame, truth) < 0.25 * error(fade, truth), k
    # The pair last → first: the frames after frame LOOP−1 lie on the way back to frame 0.
    assert error(out[-1], texture((3 * LOOP - 1) * WIDTH / (3 * LOOP))) < 1.0
    jumps = [error(out[k], out[(k + 1) % len(out)]) for k in range(len(out))]
    assert jumps[-1] == pytest.approx(np.median(jumps), rel=0.15)
    assert max(jumps) < 1.3 * min(jumps)


def test_non_integer_ratio_and_downscaled_flow():
    """8 → 30 fps (3.75 output frames per input frame) with flow computed at half width:
    the count is right and off-grid instants still land where the texture truly is."""
    frames = loop_frames(LOOP)
    count = LOOP * 30 // 8
    out = interpolate_loop(frames, count, flow_width=WIDTH // 2)
    assert len(out) == count and out[0] is frames[0]
    errors = [error(frame, texture(k * WIDTH / count)) for k, frame in enumerate(out)]
    assert max(errors) < 1.0


def test_progress_is_reported_for_every_output_frame():
    seen = []
    interpolate_loop(loop_frames(4), 6, step=lambda k, n: seen.append((k, n)))
    assert seen == [(k, 6) for k in range(1, 7)]
