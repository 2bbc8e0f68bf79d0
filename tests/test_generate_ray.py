"""``generate --ray``: the sampler's model calls on Ray workers, the frames unchanged.

Two layers. The wave plan (:func:`engine.generate.sampler.plan_waves`) is checked against
an oracle — the views denoised one at a time in list order, as the sampler documents —
on the exact Gaussian-field denoiser (no weights): overlapping sphere views, a wrapped
window onto the first, and fill windows all give the same latent bit for bit, whether a
wave goes to the model one window at a time (in-process) or whole (Ray).

Then the real thing on a local Ray cluster with 2 CPUs (one per module, as
``--ray local`` starts it; jobs reuse it, which keeps the file fast): the tiny random-
weight AnimateDiff (tests/tiny_models.py) loaded by each worker through the real loading
code gives frames equal to the in-process run's with ``np.array_equal``, text-to-video and
image-to-video; so does the tiny Wan 2.1 (tests/tiny_wan.py) with a LoRA and a still, its
causal decode split over both workers; a worker killed mid-job is restarted and its calls
redone with the same frames; cancel ends every worker; a job the memory estimate cannot
fit and bad ``--ray`` input are refused in one line, exit 2, nothing written, before any
worker loads. These prove the plumbing with tiny weights (the frames are noise, but
identical noise).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
import torch
from analytic import GaussianFieldBackend
from conftest import REPO
from tiny_models import build_tiny_animatediff
from tiny_wan import save_tiny_lora

from engine import cli
from engine.cluster.connect import connected, parse_cluster
from engine.errors import BadInput, JobCancelled, PanoLoopError
from engine.generate import schedule as sch
from engine.generate.cluster import wait_all
from engine.generate.memory import (
    JobSize,
    check_driver_fits,
    check_workers_fit,
    estimate,
    host_available,
    read_model_shape,
)
from engine.generate.ring import gather, gather_mask, mark_written, scatter
from engine.generate.sampler import _noise, _StepState, plan_waves
from engine.generate.steprule import step_rule
from engine.media import list_frames, read_image, read_manifest, write_image
from engine.progress import CancelToken, JobContext

SMALL = ["--width", "128", "--height", "64", "--frames", "4", "--window-frames", "4"]
# Sphere views, shifted windows and the blended tail (the last step) all run in 5 steps.
FAST = ["--steps", "5", "--sphere-latitudes", "0", "--sphere-longitudes", "2", "--seed", "1"]


# --------------------------------------------------------------------------- waves


def one_view_at_a_time(step: _StepState, x, views, window, i, fill):
    """The oracle: every view in list order, re-noising cells written before it this step
    (noise drawn when the view is reached), the last writer winning; then fill windows."""
    out = x.clone()
    written = torch.zeros(x.shape[1], x.shape[2] * x.shape[3], dtype=torch.bool)

    def denoise(view):
        w = gather(out, view)
        again = gather_mask(written, view)
        if bool(again.any()):
            noise = _noise(tuple(w.shape), step.generator, w.device)
            w = torch.where(again, step.rule.renoise(w, step.next_level, step.level, noise), w)
        pred = step.backend.predict_noise(w, step.t, step.embeds, step.guidance)
        x0, eps = step.rule.split(w, pred, step.level)
        scatter(out, view, step.rule.combine(x0, eps, step.next_level))
        mark_written(written, view)

    for view in views:
        denoise(view)
    if fill and not bool(written.all()):
        for view in sch.fill_windows(i, window, tuple(x.shape[1:]), written.numpy()):
            denoise(view)
    return out


class WholeWaves(GaussianFieldBackend):
    """The same denoiser, handed whole waves as the Ray backend is."""

    windows_per_call = None


@pytest.mark.parametrize("backend_class", [GaussianFieldBackend, WholeWaves])
def test_waves_give_exactly_the_one_view_at_a_time_latent(backend_class):
    backend = backend_class(window=(4, 8, 8))
    grid = (8, 16, 36)  # 36 columns: the last shifted window wraps onto the first
    window = sch.WindowGrid(backend.window, backend.align)
    rule = step_rule(backend)
    t = backend.timesteps(10)[3]
    x = torch.randn(4, *grid, generator=torch.Generator().manual_seed(0))
    views = sch.sphere_views(3, window, grid, latitudes=(0, 40), longitudes=3)
    views += sch.shifted_windows(3, window, grid)

    def step():
        return _StepState(backend, rule, None, 1.0, t, rule.level(t), rule.level(t - 100),
                          torch.Generator().manual_seed(7), JobContext())  # fmt: skip

    expected = one_view_at_a_time(step(), x, views, window, 3, fill=True)
    got, _ = step().run(x, views, window, 3, fill=True)
    assert torch.equal(got, expected)
    waves = plan_waves(views, (grid[0], grid[1] * grid[2]))
    assert 1 < len(waves) < len(views) and max(len(w) for w in waves) > 1
    assert sorted(k for wave in waves for k in wave) == list(range(len(views)))


# --------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """As test_generate.py: tiny tensors gain nothing from threads on a shared machine.
    The workers take the driver's count, so both sides compute with one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def local_cluster():
    """One local Ray cluster for the module, started as ``--ray local`` starts one
    (2 CPUs here, no dashboard); ``--ray local`` jobs in this process reuse it."""
    with connected(parse_cluster("local", flag="--ray")):
        assert ray.is_initialized()
        yield ray.cluster_resources()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_animatediff(tmp_path_factory.mktemp("models") / "tiny-animatediff")


def generate(model: Path, out: Path, *extra: str, ctx: JobContext | None = None) -> int:
    argv = ["generate", "--prompt", "misty pine forest", "--model", str(model), "--out", str(out)]
    return cli.main([*argv, *SMALL, *FAST, *extra], ctx=ctx or JobContext())


def frames_of(folder: Path) -> list[np.ndarray]:
    return [read_image(p) for p in list_frames(folder / "frames")]


@pytest.fixture(scope="module")
def in_process(tiny_model, tmp_path_factory) -> Path:
    """The reference: the same command without --ray."""
    out = tmp_path_factory.mktemp("reference") / "plain"
    assert generate(tiny_model, out) == 0
    return out


def free_cpus() -> float:
    """CPUs the cluster has free once released resources are seen (Ray updates lazily)."""
    deadline = time.monotonic() + 10
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    return ray.available_resources().get("CPU", 0)


def test_two_ray_workers_give_the_in_process_frames_bit_for_bit(
    local_cluster, tiny_model, in_process, tmp_path
):
    assert local_cluster["CPU"] == 2
    out = tmp_path / "ray"
    assert generate(tiny_model, out, "--ray", "local", "--ray-workers", "2") == 0
    plain, distributed = frames_of(in_process), frames_of(out)
    assert len(distributed) == len(plain) == 4
    assert all(np.array_equal(a, b) for a, b in zip(plain, distributed, strict=True))
    manifest, reference = read_manifest(out), read_manifest(in_process)
    assert [s["name"] for s in manifest["stages"]] == [s["name"] for s in reference["stages"]]
    assert {"sphere", "windows", "blend"} <= {s["views"] for s in manifest["stages"]}
    cluster = manifest["cluster"]
    assert (cluster["engine"], cluster["address"], cluster["workers"]) == ("ray", "local", 2)
    assert [n["device"] for n in cluster["nodes"]] == ["cpu", "cpu"]
    assert all(n["hostname"] == socket.gethostname() and n["node_id"] for n in cluster["nodes"])
    assert not any(n["restarted"] for n in cluster["nodes"])
    assert "cluster" not in reference
    assert free_cpus() == 2  # every worker ended with the job, the cluster stays


def worker_pids() -> list[int]:
    """Process ids of this job's workers, in worker order."""
    handles = [ray.get_actor(name) for name in sorted(job_workers())]
    return [ray.get(h.ready.remote())["pid"] for h in handles]


@pytest.mark.slow
def test_a_worker_killed_mid_job_is_restarted_and_the_frames_do_not_change(
    local_cluster, tiny_model, in_process, tmp_path
):
    ctx = JobContext()
    killed = []

    def progress(stage: str, step: int, total: int) -> None:
        if stage.startswith("denoise") and step == 2 and not killed:
            pid = worker_pids()[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    ctx.progress = progress
    out = tmp_path / "ray"
    assert generate(tiny_model, out, "--ray", "local", "--ray-workers", "2", ctx=ctx) == 0
    assert killed
    assert all(
        np.array_equal(a, b) for a, b in zip(frames_of(in_process), frames_of(out), strict=True)
    )
    assert [n["restarted"] for n in read_manifest(out)["cluster"]["nodes"]] == [True, False]
    assert free_cpus() == 2


def test_a_worker_that_dies_for_good_is_one_error_line(local_cluster):
    """After its one restart a worker's death reaches the job as a PanoLoopError (exit 1,
    one line), not as Ray's traceback; a plain actor without restarts stands in."""

    @ray.remote(max_restarts=0, num_cpus=1)
    class Sleeper:
        def pid(self) -> int:
            return os.getpid()

        def sleep(self) -> None:
            time.sleep(60)

    actor = Sleeper.remote()
    pid = ray.get(actor.pid.remote())
    call = actor.sleep.remote()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(PanoLoopError, match="a Ray worker died"):
        wait_all([call], CancelToken())
    assert free_cpus() == 2


def test_a_workers_bad_input_reaches_the_driver_as_itself(local_cluster):
    """A refusal raised on a worker (e.g. a LoRA that does not fit the model there) is
    the driver's BadInput — one line, exit 2 — not Ray's wrapped traceback."""

    @ray.remote(num_cpus=1)
    class Refuser:
        def check(self) -> None:
            raise BadInput("--lora x: refused on the worker", fix="use another")

    actor = Refuser.remote()
    with pytest.raises(BadInput, match="refused on the worker") as caught:
        wait_all([actor.check.remote()], CancelToken())
    assert type(caught.value) is BadInput and caught.value.fix == "use another"
    ray.kill(actor)
    assert free_cpus() == 2


def test_cancel_while_the_workers_load_ends_every_worker_and_writes_nothing(
    local_cluster, tiny_model, tmp_path
):
    """Cancel as soon as both workers exist (they are still loading the model): the job
    stops, exit 130, every worker process ends and frees its CPU, nothing is written.
    (Cancel mid-denoise is the worker test below.)"""
    ctx = JobContext()

    def cancel_once_both_workers_exist() -> None:
        deadline = time.monotonic() + 60
        while len(job_workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        ctx.cancel.cancel()

    watcher = threading.Thread(target=cancel_once_both_workers_exist, daemon=True)
    watcher.start()
    code = generate(tiny_model, tmp_path / "out", "--ray", "local", "--ray-workers", "2", ctx=ctx)
    watcher.join()
    assert code == JobCancelled.exit_code
    assert list(tmp_path.iterdir()) == []
    assert free_cpus() == 2
    assert job_workers() == []


def job_workers() -> list[str]:
    """Names of the live generate workers on the cluster."""
    named = ray.util.list_named_actors(all_namespaces=True)
    return [a["name"] for a in named if a["name"].startswith("panoloop-generate-")]


# --------------------------------------------------------------------------- image-to-video, Wan


@pytest.fixture(scope="module")
def still_png(tmp_path_factory) -> Path:
    """A 2:1 8-bit still with gradients and stripes, at the jobs' size."""
    yy, xx = np.mgrid[0:64, 0:128]
    still = np.dstack([(xx * 2) % 256, (yy * 4) % 256, ((xx + yy) * 3) % 256]).astype(np.uint8)
    path = tmp_path_factory.mktemp("still") / "still.png"
    write_image(path, still)
    return path


def test_image_to_video_on_two_ray_workers_gives_the_in_process_frames(
    local_cluster, tiny_model, still_png, tmp_path
):
    """``--image``: the still's latent is encoded on one worker, then the same sampler
    runs from it (5 steps × 0.6: the last 3)."""
    image = ["--image", str(still_png), "--denoise-strength", "0.6"]
    assert generate(tiny_model, tmp_path / "plain", *image) == 0
    ray_run = tmp_path / "ray"
    assert generate(tiny_model, ray_run, *image, "--ray", "local", "--ray-workers", "2") == 0
    plain, distributed = frames_of(tmp_path / "plain"), frames_of(ray_run)
    assert len(distributed) == len(plain) == 4
    assert all(np.array_equal(a, b) for a, b in zip(plain, distributed, strict=True))
    manifest, reference = read_manifest(ray_run), read_manifest(tmp_path / "plain")
    assert manifest["init_image"] == reference["init_image"]
    assert manifest["stages"] == reference["stages"] and manifest["stages"][0]["steps"][0] == 2
    assert free_cpus() == 2


#: Tiny Wan, 128×64 px, 40 frames → a ring of 10 latent frames, decoded in two chunks
#: (8 + 2 latent frames, each after 4 of wrapped context), one per worker.
WAN = ["--width", "128", "--height", "64", "--frames", "40", "--window-size", "64x32",
       "--window-frames", "8", "--steps", "3", "--sphere-latitudes", "0",
       "--sphere-longitudes", "1", "--seed", "2"]  # fmt: skip


def test_wan_with_a_lora_and_a_still_on_two_ray_workers_gives_the_in_process_frames(
    local_cluster, tiny_wan, still_png, tmp_path
):
    """Wan 2.1 on Ray: each worker loads the pipeline and the LoRA the driver checked
    (same bytes), the flow-matching steps run in the driver, the still is encoded on one
    worker and the causal decode's chunks run on both; frames equal bit for bit."""
    lora = save_tiny_lora(tiny_wan, tmp_path / "lora")
    extra = ["--lora", f"{lora}:0.8", "--image", str(still_png), "--denoise-strength", "0.7"]

    def run(out: Path, *more: str) -> int:
        argv = ["generate", "--prompt", "misty pine forest", "--model", str(tiny_wan)]
        return cli.main([*argv, "--out", str(out), *WAN, *extra, *more], ctx=JobContext())

    assert run(tmp_path / "plain") == 0
    assert run(tmp_path / "ray", "--ray", "local", "--ray-workers", "2") == 0
    plain, distributed = frames_of(tmp_path / "plain"), frames_of(tmp_path / "ray")
    assert len(distributed) == len(plain) == 40
    assert all(np.array_equal(a, b) for a, b in zip(plain, distributed, strict=True))
    manifest, reference = read_manifest(tmp_path / "ray"), read_manifest(tmp_path / "plain")
    assert manifest["backend"] == "wan" and manifest["step_rule"] == "flow-match-euler"
    assert manifest["loras"] == reference["loras"] and manifest["loras"][0]["scale"] == 0.8
    assert manifest["cluster"]["workers"] == 2
    different = {k for k in reference if reference[k] != manifest.get(k)} - {"timings"}
    assert different == set() and set(manifest) - set(reference) == {"cluster"}
    assert free_cpus() == 2


# --------------------------------------------------------------------------- memory


def test_the_workers_share_of_the_estimate_counts_every_worker_on_a_node(tiny_model):
    """Each worker holds a whole model: CPU workers on one node add up, with the driver's
    ring and frames when it runs there too; a CUDA worker has its GPU to itself."""
    shape = read_model_shape(tiny_model)
    job = JobSize(4096, 2048, 16, 16, (4, 32, 32), True, "float32", vae_tiling=True)
    need = estimate(shape, job)
    assert need.model + need.ring == need.device + need.host  # the in-process total
    free = 2 * need.model + need.ring - 1
    check_workers_fit(shape, job, "cpu", workers=1, driver=True, free=free, where="n")
    check_workers_fit(shape, job, "cpu", workers=2, driver=False, free=free, where="n")
    with pytest.raises(BadInput, match=r"2 Ray workers on n need about .* 1 fit there"):
        check_workers_fit(shape, job, "cpu", workers=2, driver=True, free=free, where="n")
    with pytest.raises(BadInput, match="GiB of GPU memory"):
        check_workers_fit(shape, job, "cuda", workers=1, driver=True, free=need.model - 1,
                          where="a GPU of n")  # fmt: skip
    check_workers_fit(shape, job, "cuda", workers=1, driver=True, free=need.model, where="n")
    with pytest.raises(BadInput, match="ring latent and frames"):
        check_driver_fits(shape, job, host=need.ring - 1)


#: Widths tried for a job too large, 2× the pixels each (the first, 65536×32768, suits a
#: machine with 9–94 GiB available: the estimate's ring and frames take 8.5 GiB at 1
#: frame, a worker's tiled VAE decode 43 GiB).
HUGE_WIDTHS = [round(65536 * 2 ** (k / 2) / 1024) * 1024 for k in range(9)]


def too_big(model: Path, frames: int, fits: Any) -> int:
    """The first of HUGE_WIDTHS whose estimate (1-frame windows, tiled decode) ``fits``
    accepts as (MemoryEstimate, this machine's available RAM), so the refusal tested
    comes from the share meant whatever the machine's memory."""
    shape, available = read_model_shape(model), host_available()
    for width in HUGE_WIDTHS:
        job = JobSize(width, width // 2, frames, frames, (1, 32, 32), True, "float32",
                      vae_tiling=True)  # fmt: skip
        if fits(estimate(shape, job), available):
            return width
    raise AssertionError(f"no width in {HUGE_WIDTHS} suits {available} bytes available")


TOO_BIG = {
    # The driver's share fits, two workers' (with the driver's, on this one node) do not.
    "workers": (1, lambda need, ram: need.ring < 0.8 * ram < 0.64 * (2 * need.model + need.ring),
                "2 Ray workers on {host} need about"),
    # The driver's own share (ring latent and frames) does not fit.
    "driver": (16, lambda need, ram: need.ring > 1.25 * ram,
               "of RAM on this machine for its ring latent and frames"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TOO_BIG))
def test_a_job_that_cannot_fit_is_refused_before_any_worker_loads(
    case, local_cluster, unloadable_model, tmp_path, capsys
):
    """The memory preflight with --ray: the driver's share before any cluster is reached,
    the workers' share where they were placed (both on this node) before any loads —
    the garbage weights would fail to load (exit 1), so exit 2 proves nothing loaded."""
    frames, fits, named = TOO_BIG[case]
    width = too_big(unloadable_model, frames, fits)
    size = ["--width", str(width), "--height", str(width // 2), "--frames", str(frames)]
    code = generate(unloadable_model, tmp_path / "out", *size, "--window-frames", "1",
                    "--ray", "local", "--ray-workers", "2")  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{width}x{width // 2}" in err[0], err
    assert named.format(host=socket.gethostname()) in err[0], err
    assert list(tmp_path.iterdir()) == []
    assert free_cpus() == 2 and job_workers() == []


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def unloadable_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model's configs with garbage weights: exit 2 (not a load failure) proves
    the check ran before any worker loaded anything."""
    folder = tmp_path_factory.mktemp("models") / "garbage"
    shutil.copytree(tiny_model, folder)
    for weights in folder.rglob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    return folder


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


BAD = [
    (["--ray", "local", "--ray-workers", "0"], "--ray-workers must be at least 1, got 0"),
    (["--ray-workers", "2"], "--ray-workers 2 needs --ray"),
    (["--ray", "cluster-head"], "'cluster-head'"),
    (["--ray", "127.0.0.1:{closed}"], "127.0.0.1:{closed}"),
    (["--ray", "local", "--device", "cuda:1"], "--device cuda:1"),
    (["--ray", "local", "--ray-workers", "3"], "--ray-workers 3: the Ray cluster has 2 CPU in all"),
]


@pytest.mark.parametrize(("extra", "named"), BAD, ids=[b[1] for b in BAD])
def test_bad_ray_input_is_one_line_exit_2_and_nothing_written(
    extra, named, local_cluster, unloadable_model, tmp_path, capsys
):
    port = str(closed_port())
    extra = [a.replace("{closed}", port) for a in extra]
    named = named.replace("{closed}", port)
    start = time.monotonic()
    assert generate(unloadable_model, tmp_path / "out", *extra) == 2
    assert time.monotonic() - start < 10  # an unreachable head is refused within seconds
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0], err
    assert list(tmp_path.iterdir()) == []
    assert free_cpus() == 2


def test_without_ray_installed_the_flag_says_how_to_install_it(
    unloadable_model, tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    assert generate(unloadable_model, tmp_path / "out", "--ray", "local") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Ray, which is not installed" in err[0], err
    assert "pip install 'panoloop-engine[cluster]'" in err[0]
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the worker


@pytest.mark.slow
def test_worker_job_on_its_own_local_cluster_stops_on_sigterm_and_leaves_nothing(
    tiny_model, tmp_path
):
    """The add-on's path: a JSON job with --ray local starts its own cluster in the worker
    process; SIGTERM mid-denoise (Ray's own handler, installed by ray.init, must not take
    over) cancels the job, ends the workers, the cluster and its session folder, and
    writes nothing."""
    out = tmp_path / "out"
    argv = ["--prompt", "pines", "--model", str(tiny_model), "--out", str(out), *SMALL, *FAST]
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"command": "generate", "argv": [*argv, "--ray", "local"]}))
    # A short folder of its own for the session (Ray's sockets live there), so other
    # clusters on this machine cannot be mistaken for this one.
    root = Path(tempfile.mkdtemp(prefix="plr", dir="/tmp"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "worker", "--job", str(job)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, env={**os.environ, "RAY_TMPDIR": str(root)},
    )  # fmt: skip
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1].get("stage", "").startswith("denoise"):
            session = set(root.glob("panoloop-ray-*"))
            running = [p for s in session for p in processes_naming(str(s))]
            proc.send_signal(signal.SIGTERM)
            break
    events += [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=60) == JobCancelled.exit_code
    assert events[-1]["event"] == "cancelled"
    assert len(session) == 1 and not next(iter(session)).exists()
    assert len(running) >= 3  # the cluster ran: GCS, raylet, workers…
    folder = str(next(iter(session)))
    deadline = time.monotonic() + 15
    while processes_naming(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_naming(folder) == []  # the cluster's raylet, GCS and workers ended
    assert list(root.iterdir()) == []
    root.rmdir()
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["job.json"]


def processes_naming(text: str) -> list[int]:
    """Live processes whose command line holds ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found
