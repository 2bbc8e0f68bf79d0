"""The ring latent and its window schedules, without any model (fast).

Conventions under test: latent grid (F, H, W), row 0 = +Z, centre column faces +X,
columns wrap modulo W (360° seam), frames wrap modulo F (loop point).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from analytic import GaussianFieldBackend
from schedule_reference import coverage, multidiffusion_windows

from engine.cameras import BlenderCamera
from engine.errors import BadInput
from engine.generate import schedule as sch
from engine.generate.ring import gather, nearest_view, scatter, window_view
from engine.generate.sampler import GenerateRequest, sample_latent
from engine.progress import JobContext

WINDOW = sch.WindowGrid((8, 8, 8), align=2)
GRID = (16, 16, 32)  # frames, latent rows, latent cols


@pytest.mark.parametrize("grid", [GRID, (12, 12, 20), (8, 8, 16)])
def test_shifted_windows_write_every_cell_once_every_step(grid):
    divisible = grid[0] % 8 == 0 and grid[2] % 8 == 0
    for step in range(sch.OFFSET_CYCLE):
        flat = coverage(sch.shifted_windows(step, WINDOW, grid, latitude_shift=False), grid)
        assert flat.min() == 1, step
        if divisible:
            assert flat.max() == 1, step
        views = sch.shifted_windows(step, WINDOW, grid)
        counts = coverage(views, grid)
        assert counts.min() == 1, step
        if divisible:  # a widened edge band reads extra rows but writes only its own
            assert counts.max() == 1, step
            assert sum(v.pixels for v in views) >= math.prod(grid), step


def test_window_grid_moves_every_step_and_crosses_seam_and_loop():
    offsets = [sch.step_offsets(s, WINDOW) for s in range(12)]
    assert all(a != b for a, b in zip(offsets, offsets[1:], strict=False))
    # WINDOW (8, 8, 8) with align 2: 8 frame offsets, 4 row and 4 column offsets, each
    # visited once in any run of that many consecutive steps.
    for axis, count, align in ((0, 8, 1), (1, 4, 2), (2, 4, 2)):
        for start in range(4):
            seen = [offsets[start + k][axis] for k in range(count)]
            assert sorted(seen) == list(range(0, 8, align)), (axis, start)
    animatediff = sch.WindowGrid((16, 64, 64), align=8)
    cols = [sch.step_offsets(s, animatediff)[2] for s in range(8)]
    assert sorted(cols) == list(range(0, 64, 8))
    crosses_seam = crosses_loop = 0
    F, H, W = GRID
    for step in range(sch.OFFSET_CYCLE):
        for view in sch.shifted_windows(step, WINDOW, GRID):
            cols = view.cells.reshape(view.height, view.width)[0] % W
            crosses_seam += bool(np.any(np.diff(cols) < 0))
            crosses_loop += bool(np.any(np.diff(view.frames) < 0))
    assert crosses_seam > 0 and crosses_loop > 0


def test_window_pixels_per_latent_pixel_stay_within_the_budget():
    window = sch.WindowGrid((16, 64, 64), align=8)  # AnimateDiff at 2048×1024
    grid = (16, 128, 256)
    ratios = [
        sum(v.pixels for v in sch.shifted_windows(s, window, grid)) / math.prod(grid)
        for s in range(sch.OFFSET_CYCLE)
    ]
    assert max(ratios) <= 1.25
    no_lat = sch.shifted_windows(3, window, grid, latitude_shift=False)
    assert sum(v.pixels for v in no_lat) / math.prod(grid) == 1.0
    md = multidiffusion_windows(window, grid, stride=8)
    assert sum(v.pixels for v in md) / math.prod(grid) == pytest.approx(36.0)


def test_edge_bands_never_wrap_latitude_and_write_on_the_shifted_grid():
    for step in range(sch.OFFSET_CYCLE):
        offset = sch.step_offsets(step, WINDOW)[1]
        bands = sch.row_bands(16, 8, offset, 2)
        written = np.zeros(16, dtype=int)
        for band in bands:
            assert 0 <= band.top and band.top + band.rows <= 16 and band.rows >= 4
            assert band.top <= band.write_top
            assert band.write_top + band.write_rows <= band.top + band.rows
            written[band.write_top : band.write_top + band.write_rows] += 1
            for border in (band.write_top, band.write_top + band.write_rows):
                assert border in (0, 16) or (border + offset) % 8 == 0, (step, band)
        assert (written == 1).all(), step
        widened = [b for b in bands if b.rows != b.write_rows]
        assert bands[: len(widened)] == widened  # they read their borrowed rows untouched


def test_blended_tail_averages_two_tilings_half_a_window_apart():
    step = 5
    views = sch.blend_windows(step, WINDOW, GRID)
    first = sch.shifted_windows(step, WINDOW, GRID)
    twin = views[len(first) :]
    same = [np.array_equal(a.cells, b.cells) and np.array_equal(a.frames, b.frames)
            for a, b in zip(views, first, strict=False)]  # fmt: skip
    assert all(same)
    assert (coverage(first, GRID) == 1).all() and (coverage(twin, GRID) == 1).all()
    f_off, _, c_off = sch.step_offsets(step, WINDOW)
    assert {int(v.frames[0]) % 8 for v in twin} == {(f_off + 4) % 8}
    assert {int(v.cells[0] % GRID[2]) % 8 for v in twin} == {(c_off + 4) % 8}
    # Weights: 1/n on a border pixel, ~1 mid-window, flat toward the latitude edge.
    F, H, W = GRID
    middle = window_view(0, 4, 8, (8, 8, 8), GRID)
    weights = sch.blend_weights(middle, GRID)
    assert weights[0, 4, 4] == pytest.approx(weights[4, 4, 4] / 8 / 0.875)
    assert weights[4, 4, 0] == weights[4, 4, 7] == pytest.approx(weights[4, 4, 4] / 7)
    top = sch.blend_weights(window_view(0, 0, 8, (8, 8, 8), GRID), GRID)
    assert top[4, 0, 4] == top[4, 3, 4] > top[4, 7, 4]
    # Where one tiling has a column border, the other's estimate dominates the mean.
    share = np.zeros((2, F, H * W))
    for k, tiling in enumerate((first, twin)):
        for view in tiling:
            w = sch.blend_weights(view, GRID).reshape(len(view.frames), -1)
            np.add.at(share[k], (view.frames[:, None], view.cells[None, :]), w)
    border_cols = (np.arange(W) - c_off) % 8 == 0
    on_border = share.reshape(2, F, H, W)[..., border_cols]
    twin_share = on_border[1] / on_border.sum(axis=0)
    # Mostly the twin's; about half where the twin has a row or frame border there too.
    assert np.median(twin_share) > 0.85 and twin_share.mean() > 0.7


def test_stage_plan_ends_with_the_blended_tail():
    window = sch.WindowGrid((16, 64, 64), 8)
    stages = sch.plan_stages(25, (128, 256), window)
    assert [s.name for s in stages] == ["sphere", "windows", "refine", "blend"]
    assert (stages[-2].stop, stages[-1].start, stages[-1].stop) == (23, 23, 25)
    assert stages[-1].scale == 1
    assert sch.plan_stages(25, (128, 256), window, blend_steps=0)[-1].name == "refine"
    assert [s.name for s in sch.plan_stages(10, (64, 128), window, schedule="windows")] == [
        "windows",
        "blend",
    ]
    assert sch.plan_stages(3, (64, 128), window)[-1].name == "windows"  # too few steps


def _jump_energy(latent: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean squared difference between index i and i−1 along ``dim`` (i = 0 wraps)."""
    jumps = (latent - torch.roll(latent, 1, dims=dim)).pow(2)
    return jumps.mean(dim=[d for d in range(latent.dim()) if d != dim % latent.dim()])


def _worst_jump(latent: torch.Tensor) -> list[float]:
    """Per axis (frames, rows, cols): the largest neighbour jump energy over the median
    (the jumps next to the two pole rows left out)."""
    worst = []
    for dim in (1, 2, 3):
        energy = _jump_energy(latent, dim)
        if dim == 2:
            energy = energy[2:-1]
        worst.append(float(energy.max() / energy.median()))
    return worst


def test_blended_tail_heals_the_borders_no_later_step_would():
    backend = GaussianFieldBackend(window=(4, 8, 8), channels=48)
    common = dict(prompt="field", width=64, height=32, frames=8, steps=25, guidance=1.0)
    plain = GenerateRequest(**common, schedule="windows", blend_steps=0)
    tail = GenerateRequest(**common, schedule="windows")
    plain_worst = _worst_jump(sample_latent(backend, plain, JobContext()).latent)
    tail_worst = _worst_jump(sample_latent(backend, tail, JobContext()).latent)
    assert min(plain_worst) > 1.2  # the second-to-last step's borders, in every axis
    assert max(tail_worst) < 1.17
    assert all(t < p - 0.1 for t, p in zip(tail_worst, plain_worst, strict=True))


def test_nearest_gather_scatter_keeps_exact_values():
    grid = (4, 16, 32)
    latent = torch.randn(4, *grid, generator=torch.Generator().manual_seed(0))
    views = sch.sphere_views(3, sch.WindowGrid((4, 8, 8), 2), grid)
    views += [window_view(2, 4, 28, (4, 8, 8), grid)]  # wraps the seam and the loop
    for view in views:
        gathered = gather(latent, view)
        flat = latent.reshape(4, grid[0], -1)[:, view.frames][:, :, view.cells]
        assert torch.equal(gathered.reshape(flat.shape), flat)  # exact copies, no blending
        kept = view.cells[view.keep]
        assert len(np.unique(kept)) == len(kept)  # each cell written back once
        values = gathered.reshape(4, len(view.frames), -1)[:, :, view.keep]
        source = latent.reshape(4, grid[0], -1)[:, view.frames][:, :, kept]
        assert torch.equal(values.sort(-1).values, source.sort(-1).values)  # same multiset
        copy = latent.clone()
        scatter(copy, view, gathered)
        assert torch.equal(copy, latent)


def test_sphere_view_directions_follow_blender_convention():
    rays = sch.look_directions(0.0, 90.0, 120.0, 8, 8)  # looking at +Y
    centre = rays[3:5, 3:5].mean(axis=(0, 1))
    assert np.allclose(centre / np.linalg.norm(centre), [0, 1, 0], atol=1e-9)
    view = nearest_view(sch.look_directions(0.0, 0.0, 30.0, 2, 2), np.arange(1), (1, 8, 16), "s")
    cols = view.cells % 16
    assert set(cols.tolist()) == {7, 8}  # +X is the centre of the panorama
    top = nearest_view(sch.look_directions(90.0, 0.0, 30.0, 2, 2), np.arange(1), (1, 8, 16), "s")
    assert set((top.cells // 16).tolist()) == {0}  # the zenith is row 0


def test_camera_view_is_centred_on_the_camera():
    # A camera at the origin looking along +Y (Blender: rotation_euler (90°, 0, 0)).
    matrix = [[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
    cam = BlenderCamera("cam", tuple(map(tuple, matrix)), resolution_x=640, resolution_y=480)
    assert np.allclose(cam.view_direction(), [0, 1, 0])
    rays = sch.camera_directions(cam, 8, 8)
    centre = rays[3:5, 3:5].mean(axis=(0, 1))
    assert np.allclose(centre / np.linalg.norm(centre), [0, 1, 0], atol=1e-9)
    (view,) = sch.camera_views(0, sch.WindowGrid((4, 8, 8), 2), (4, 16, 32), [cam], margin=0)
    cols = view.cells.reshape(8, 8)[:, 3:5] % 32
    assert abs(cols.mean() - 32 * 0.25) < 1.5  # +Y sits at u = 0.25


def _camera_45() -> BlenderCamera:
    """45°×45° at the origin looking along +Y: about 8×8 cells of a 32×64 latent."""
    matrix = ((1, 0, 0, 0), (0, 0, -1, 0), (0, 1, 0, 0), (0, 0, 0, 1))
    lens = 18.0 / math.tan(math.radians(22.5))
    return BlenderCamera("cam", matrix, lens=lens, resolution_x=512, resolution_y=512)


def test_camera_view_holds_the_whole_picture_and_its_outline_moves():
    cam, grid, window = _camera_45(), (4, 32, 64), sch.WindowGrid((4, 8, 8))

    def footprint(step: int, margin: float) -> frozenset:
        (view,) = sch.camera_views(step, window, grid, [cam], margin=margin)
        return frozenset(view.cells[view.keep].tolist())

    def box(cells: frozenset) -> tuple[int, int, int, int]:
        rows, cols = [c // 64 for c in cells], [c % 64 for c in cells]
        return min(rows), max(rows), min(cols), max(cols)

    picture = footprint(0, 0.0)
    assert len(picture) == 64  # 8×8 view pixels on 8×8 distinct cells at this scale
    top, bottom, left, right = box(picture)
    outlines = [box(footprint(step, sch.CAMERA_MARGIN)) for step in range(sch.OFFSET_CYCLE)]
    for r0, r1, c0, c1 in outlines:  # the widened view always spans the whole picture
        assert r0 <= top and r1 >= bottom and c0 <= left and c1 >= right
    assert len(set(outlines)) >= 8  # and its edges keep moving
    shifts = np.array([sch.camera_shift(s, 0.5) for s in range(sch.OFFSET_CYCLE)])
    assert np.abs(shifts).max() == pytest.approx(0.25)  # within ±margin/2
    assert sch.camera_steps(25) == 12 and sch.camera_steps(1) == 1


def test_moving_camera_view_leaves_no_outline_where_a_fixed_one_does():
    backend = GaussianFieldBackend(window=(4, 8, 8), channels=48)
    cam = _camera_45()
    common = dict(prompt="field", width=64, height=32, frames=4, steps=25, guidance=1.0,
                  cameras=(cam,))  # fmt: skip
    fixed = GenerateRequest(**common, camera_margin=0.0, camera_fraction=1.0)
    ours = GenerateRequest(**common)
    (view,) = sch.camera_views(0, sch.WindowGrid((4, 8, 8)), (4, 32, 64), [cam], margin=0.0)
    rows = sorted({int(c) // 64 for c in view.cells})
    cols = sorted({int(c) % 64 for c in view.cells})

    def outline(latent: torch.Tensor) -> float:
        band = latent[:, :, rows[0] : rows[-1] + 1]
        jumps = _jump_energy(band, -1)
        return float(torch.stack([jumps[cols[0]], jumps[cols[-1] + 1]]).max() / jumps.median())

    assert outline(sample_latent(backend, fixed, JobContext()).latent) > 1.3
    assert outline(sample_latent(backend, ours, JobContext()).latent) < 1.12


def test_stage_plan_is_coarse_to_fine_when_the_canvas_allows():
    window = sch.WindowGrid((16, 64, 64), 8)
    stages = sch.plan_stages(25, (128, 256), window)
    assert [s.name for s in stages] == ["sphere", "windows", "refine", "blend"]
    assert stages[0].scale == 2 and stages[-1].scale == 1 and stages[-1].stop == 25
    small = sch.plan_stages(25, (64, 128), window)
    assert [s.name for s in small] == ["sphere", "windows", "blend"]
    assert sch.plan_stages(1, (64, 128), window) == [sch.Stage("sphere", "sphere", 0, 1)]


def test_analytic_denoiser_is_the_exact_posterior_mean():
    backend = GaussianFieldBackend(window=(3, 4, 5), channels=1)
    x = torch.randn(1, 3, 4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = 400
    alpha = float(backend.alphas_cumprod[t])
    eps = backend.predict_noise(x, t, None, 1.0)
    x0 = (x - (1 - alpha) ** 0.5 * eps) / alpha**0.5
    # Dense Gaussian conditioning: E[x0|x] = √ᾱ K (ᾱK + (1−ᾱ)I)⁻¹ x.
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in (3, 4, 5)], indexing="ij"), -1)
    d = idx.reshape(-1, 1, 3) - idx.reshape(1, -1, 3)
    k = np.exp(-(d**2).sum(-1) / (2 * 2.0**2))
    dense = alpha**0.5 * k @ np.linalg.solve(alpha * k + (1 - alpha) * np.eye(60), x.reshape(-1))
    assert np.allclose(x0.reshape(-1).numpy(), dense, atol=1e-8)


def _border_ratio(latent: torch.Tensor, w: int) -> float:
    """Gradient energy across fixed window borders (columns w, 2w, …) over the interior."""
    jumps = _jump_energy(latent, -1)
    border = torch.zeros_like(jumps, dtype=torch.bool)
    border[::w] = True
    return float(jumps[border].mean() / jumps[~border].mean())


def test_shifting_hides_window_borders_that_fixed_tiling_shows():
    backend = GaussianFieldBackend(window=(4, 8, 8), channels=8)
    common = dict(prompt="field", width=64, height=32, frames=8, steps=12, guidance=1.0)
    fixed = sample_latent(backend, GenerateRequest(**common, schedule="fixed"), JobContext())
    ours = sample_latent(backend, GenerateRequest(**common, schedule="windows"), JobContext())
    assert _border_ratio(fixed.latent, 8) > 1.5
    assert _border_ratio(ours.latent, 8) < 1.2


@pytest.mark.parametrize(
    ("field", "value"),
    [("blend_steps", -1), ("camera_margin", -0.1), ("camera_margin", float("nan")),
     ("camera_fraction", 1.5)],
)  # fmt: skip
def test_sampler_knobs_out_of_range_are_refused_naming_the_value(field, value):
    backend = GaussianFieldBackend(window=(4, 8, 8), channels=1)
    request = GenerateRequest("field", 64, 32, 4, 5, **{field: value})
    with pytest.raises(BadInput, match=f"{field} .*{value}"):
        sample_latent(backend, request, JobContext())
