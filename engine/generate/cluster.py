"""Generation on Ray: workers hold the model, the driver keeps the ring.

``generate --ray local|auto|HOST:PORT|ray://HOST:PORT [--ray-workers N]`` runs the very
sampler of :mod:`.sampler` in the driver process — the ring latent, shifted windows,
sphere and camera views, the blended tail, the one seeded generator — and sends only
the model calls out. Every step the sampler groups its views into waves
(:func:`.sampler.plan_waves`); :meth:`RayBackend.predict_windows` cuts a wave's windows
into one contiguous share per worker, sends each share as numpy float32 through Ray's
object store and hands the outputs back in the wave's own order, so the sampler writes
them into the ring exactly as it does in-process. Each window stays one model call on
one window (the batch the in-process run uses), in the same dtype and with the driver's
torch thread count, so on the same kind of machine the frames are bit-identical to the
run without ``--ray``.

The rest of the model's work runs on the workers too, in a fixed order: an AnimateDiff
ring's frames are decoded frame f on worker f mod N; a Wan ring's causal decode runs in
its independent chunks (:func:`.wan.decode_chunks`, each with its wrapped temporal
context), chunk k on worker k mod N; an image-to-video still is encoded on the first.

Workers: one actor each, one CPU (plus one GPU on CUDA), placed together through a
placement group that must be ready within :data:`PLACEMENT_TIMEOUT_S`. Before any worker
loads, each placed bundle measures its node's memory and the driver checks the job's
estimate (:mod:`.memory`) against it, counting the workers that share a node
(:func:`check_nodes_memory`). Every worker then loads the model once — AnimateDiff or
Wan 2.1 with its LoRAs (:class:`LoadSpec`) — on its own node, through :mod:`.loading` /
:mod:`.wan` (a hub id at the commit the driver resolved; a folder at the same path,
whose fingerprint must equal the driver's; a LoRA whose bytes must equal the driver's).
Ray restarts a worker process that dies once and redoes its calls (the model reloads);
a second death is reported and nothing is written. Cancel, SIGTERM and every failure end
every worker; a local cluster started for the job is shut down with it.

Ray is an optional extra (``pip install 'panoloop-engine[cluster]'``); it is imported
inside the functions that use it, so the engine runs without it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ..cluster.connect import ClusterAddress, check_reachable, connected, import_ray, parse_cluster
from ..errors import BadInput, PanoLoopError
from ..progress import CancelToken, JobContext

#: Seconds the workers get to be placed on the cluster before the job is refused.
PLACEMENT_TIMEOUT_S = 30.0
#: Seconds between cancellation checks while waiting on the workers.
POLL_S = 0.1
#: Workers are named ``panoloop-generate-<job>-<k>`` (find them with ``ray list actors``).
WORKER_NAME = "panoloop-generate"


# --------------------------------------------------------------------------- arguments


def check_ray_arguments(ray: str | None, workers: int | None, device: str) -> ClusterAddress | None:
    """The ``--ray`` flags, checked before anything loads (the address parsed, Ray
    importable, a head reachable: :mod:`engine.cluster.connect`); None without ``--ray``."""
    if ray is None:
        if workers is not None:
            raise BadInput(f"--ray-workers {workers} needs --ray (local or a cluster's address)")
        return None
    if workers is not None and workers < 1:
        raise BadInput(f"--ray-workers must be at least 1, got {workers}")
    if device not in ("auto", "cpu", "cuda"):
        raise BadInput(
            f"--device {device} with --ray: each worker picks its own device; "
            "use auto, cpu or cuda (one GPU per worker)"
        )
    target = parse_cluster(ray, flag="--ray")
    import_ray(target.flag)
    check_reachable(target)
    return target


# --------------------------------------------------------------------------- loading spec


@dataclass(frozen=True)
class LoraRef:
    """A ``--lora`` as the driver checked it: the worker finds ``source`` as the driver
    did and must read the same bytes (``sha256``)."""

    source: str
    scale: float
    sha256: str


@dataclass(frozen=True)
class LoadSpec:
    """Everything a worker needs to load, on its own node, the model the driver checked.

    ``family`` is ``animatediff`` or ``wan``. ``revision``/``adapter_revision`` pin hub
    ids to the driver's commit (None for a folder); ``fingerprint``/``adapter_fingerprint``
    are the driver's revisions, which the worker's own inspection must reproduce.
    ``threads`` is the driver's torch thread count: the same count gives the same float
    reductions on the CPU. ``window`` (latent frames, rows, cols) and ``loras`` are Wan's.
    """

    model: str
    revision: str | None
    fingerprint: str
    motion_adapter: str | None
    adapter_revision: str | None
    adapter_fingerprint: str | None
    variant: str | None
    offline: bool
    device: str
    dtype: str
    window_frames: int | None
    cpu_offload: bool
    vae_slicing: bool
    vae_tiling: bool
    threads: int
    family: str = "animatediff"
    window: tuple[int, int, int] | None = None
    loras: tuple[LoraRef, ...] = ()


def load_spec(info: Any, args: Any, *, vae_tiling: bool) -> LoadSpec:
    """The :class:`LoadSpec` of an AnimateDiff ``info`` (:func:`.loading.inspect_model`)
    and the generate arguments."""
    adapter = info.adapter
    return _spec_from_args(
        args,
        revision=info.revision if info.source.repo_id else None,
        fingerprint=info.revision,
        motion_adapter=args.motion_adapter,
        adapter_revision=(adapter.source.revision if adapter and adapter.source.repo_id else None),
        adapter_fingerprint=adapter.source.revision if adapter else None,
        variant=info.variant,
        vae_slicing=args.vae_slicing,
        vae_tiling=vae_tiling,
    )


def wan_load_spec(
    info: Any, args: Any, *, window: tuple[int, int, int], loras: Sequence[Any], vae_tiling: bool
) -> LoadSpec:
    """The :class:`LoadSpec` of a Wan ``info`` (:func:`.wan.inspect_wan`), its checked
    ``loras`` (:class:`.wan.LoraInfo`), the window of one model call and the arguments."""
    return _spec_from_args(
        args,
        revision=info.revision if info.files is not None and info.files.repo_id else None,
        fingerprint=info.revision,
        motion_adapter=None,
        adapter_revision=None,
        adapter_fingerprint=None,
        variant=info.variant,
        vae_slicing=False,
        vae_tiling=vae_tiling,
        family="wan",
        window=tuple(window),
        loras=tuple(LoraRef(lora.spec.source, lora.spec.scale, lora.sha256) for lora in loras),
    )


def _spec_from_args(args: Any, **model: Any) -> LoadSpec:
    """A :class:`LoadSpec`: the fields every family takes from the generate arguments as
    they are (and this process's torch thread count), plus the ``model`` fields."""
    return LoadSpec(
        model=args.model,
        offline=args.offline,
        device=args.device,
        dtype=args.dtype,
        window_frames=args.window_frames,
        cpu_offload=args.cpu_offload,
        threads=torch.get_num_threads(),
        **model,
    )


def worker_dtype(spec: LoadSpec, device: str) -> str:
    """The dtype the workers load in on ``device`` (``float32``…), as their family picks it."""
    from .loading import pick_dtype
    from .wan import pick_wan_dtype

    pick = pick_wan_dtype if spec.family == "wan" else pick_dtype
    return str(pick(spec.dtype, device)).removeprefix("torch.")


def load_on_worker(spec: LoadSpec) -> Any:
    """Inspect and load the model in this process as the driver did; the backend."""
    if spec.family == "wan":
        return _load_wan_on_worker(spec)
    from .loading import inspect_model, load_animatediff

    info = inspect_model(
        spec.model,
        motion_adapter=spec.motion_adapter,
        offline=spec.offline,
        revision=spec.revision,
        adapter_revision=spec.adapter_revision,
        variant=spec.variant,
    )
    _same_model(spec, info.revision, info.adapter.source.revision if info.adapter else None)
    return load_animatediff(
        info,
        device=spec.device,
        dtype=spec.dtype,
        window_frames=spec.window_frames,
        offline=spec.offline,
        cpu_offload=spec.cpu_offload,
        vae_slicing=spec.vae_slicing,
        vae_tiling=spec.vae_tiling,
    )


def _load_wan_on_worker(spec: LoadSpec) -> Any:
    """Wan as the driver checked it: the same pipeline revision and variant, the same
    LoRA bytes (each re-read and re-checked against the base here)."""
    from .wan import LoraSpec, inspect_lora, inspect_wan, load_wan

    info = inspect_wan(
        spec.model, offline=spec.offline, revision=spec.revision, variant=spec.variant
    )
    _same_model(spec, info.revision, None)
    loras = []
    for ref in spec.loras:
        lora = inspect_lora(LoraSpec(ref.source, ref.scale), info, offline=spec.offline)
        if lora.sha256 != ref.sha256:
            raise PanoLoopError(
                f"LoRA {ref.source} on {socket.gethostname()} is not the driver's "
                f"(sha256 {lora.sha256[:12]}… here, {ref.sha256[:12]}… on the driver)",
                fix="give every node the same LoRA file, or use a hub id",
            )
        loras.append(lora)
    return load_wan(
        info,
        window=spec.window,
        device=spec.device,
        dtype=spec.dtype,
        loras=tuple(loras),
        offline=spec.offline,
        cpu_offload=spec.cpu_offload,
        vae_tiling=spec.vae_tiling,
    )


def _same_model(spec: LoadSpec, found: str, adapter: str | None) -> None:
    """PanoLoopError when this node's model (or adapter) is not the one the driver checked."""
    if (found, adapter) != (spec.fingerprint, spec.adapter_fingerprint):
        raise PanoLoopError(
            f"model {spec.model} on {socket.gethostname()} is not the driver's "
            f"({found} here, {spec.fingerprint} on the driver)",
            fix="give every node the same model folder, or use a hub id",
        )


def measure_memory(device: str) -> dict[str, Any]:
    """Run on a worker's bundle before any worker loads: its node and the bytes free on
    ``device`` there (the GPU Ray gave it, or the node's available RAM; None unknown)."""
    import ray

    from .memory import available_memory

    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "hostname": socket.gethostname(),
        "free": available_memory(device),
    }


# --------------------------------------------------------------------------- the worker


@dataclass(frozen=True)
class RemotePrompt:
    """The prompt as the driver holds it: the text, which every worker encodes itself
    (the same encoder gives the same states), and the token counts for the manifest."""

    prompt: str
    negative: str
    guidance: float
    info: tuple[tuple[str, int], ...] = ()

    def describe(self) -> dict[str, int]:
        return dict(self.info)


class GenerateWorker:
    """One Ray worker: the model, loaded once in this process, and its model calls.

    A load failure is kept and raised by :meth:`ready`, so it reaches the driver as the
    one-line error it is rather than as an actor that failed to start.
    """

    def __init__(self, spec: LoadSpec) -> None:
        torch.set_num_threads(spec.threads)
        self.embeds: dict[tuple[str, str, float], Any] = {}
        self.backend: Any = None
        self.error: PanoLoopError | None = None
        try:
            self.backend = load_on_worker(spec)
        except PanoLoopError as exc:
            self.error = exc

    def ready(self) -> dict[str, Any]:
        """Where this worker runs (for the manifest), or the load error."""
        import ray

        if self.error is not None:
            raise self.error
        context = ray.get_runtime_context()
        return {
            "node_id": context.get_node_id(),
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "device": str(self.backend.device),
            "restarted": bool(context.was_current_actor_reconstructed),
        }

    def meta(self) -> dict[str, Any]:
        """What the sampler reads from a backend besides model calls."""
        from .steprule import step_rule

        backend = self.backend
        return {
            "latent_channels": backend.latent_channels,
            "vae_factor": backend.vae_factor,
            "align": backend.align,
            "window": tuple(backend.window),
            "time_factor": getattr(backend, "time_factor", 1),
            "step_rule": step_rule(backend),
            "schedule_summary": getattr(backend, "schedule_summary", dict)(),
            "lands": hasattr(backend, "previous_timestep"),
            "decodes_video": hasattr(backend, "decode_video"),
        }

    def timesteps(self, steps: int) -> tuple[list[int], list[int | None]]:
        """The backend's timesteps for ``steps`` and where each step lands."""
        timesteps = self.backend.timesteps(steps)
        previous = getattr(self.backend, "previous_timestep", None)
        landing = [previous(i, timesteps) for i in range(len(timesteps))] if previous else []
        return timesteps, landing

    def encode(self, prompt: RemotePrompt) -> dict[str, int]:
        """Encode the prompt (kept for later calls); its token counts."""
        embeds = self._embeds(prompt)
        return embeds.describe() if hasattr(embeds, "describe") else {}

    def predict(
        self, windows: list[np.ndarray], t: float, prompt: RemotePrompt, guidance: float
    ) -> list[np.ndarray]:
        """The model's output for each window, one model call per window, in order."""
        embeds = self._embeds(prompt)
        outs = []
        for window in windows:
            latents = torch.from_numpy(np.array(window))
            outs.append(self.backend.predict_noise(latents, t, embeds, guidance).numpy())
        return outs

    def encode_still(self, image: np.ndarray, frames: int) -> np.ndarray:
        """The still's clean latent (C, frames, h, w) for image-to-video."""
        return self.backend.encode_still(np.array(image), frames).numpy()

    def decode_chunk(self, context: np.ndarray, warmup: int) -> list[np.ndarray]:
        """A chunk of Wan's ring with the ``warmup`` latent frames of wrapped temporal
        context before it (C, warmup + n, H, W; :func:`.wan.chunk_context`) → the chunk's
        frames (the context's are dropped)."""
        latent = torch.from_numpy(np.array(context))
        return self.backend.decode_chunk(latent, warmup, latent.shape[1], warmup=warmup)

    def decode(self, latent: np.ndarray, wrap: bool) -> tuple[np.ndarray, bool]:
        """One latent frame → uint8 RGB, and whether the VAE runs upcast to float32 now."""
        frame = self.backend.decode_frame(torch.from_numpy(np.array(latent)), wrap=wrap)
        return frame, bool(getattr(self.backend, "vae_upcast", False))

    def reset_vae(self) -> None:
        """Back to the VAE's loaded dtype (float16 → float32 → float16 is exact)."""
        backend = self.backend
        if getattr(backend, "vae_upcast", False):
            backend.pipe.vae.to(backend.dtype)
            backend.vae_upcast = False

    def describe(self) -> dict[str, Any]:
        return self.backend.describe()

    def _embeds(self, prompt: RemotePrompt) -> Any:
        key = (prompt.prompt, prompt.negative, prompt.guidance)
        if key not in self.embeds:
            self.embeds[key] = self.backend.encode_prompt(*key)
        return self.embeds[key]


# --------------------------------------------------------------------------- the driver


def wait_all(refs: Sequence[Any], cancel: CancelToken) -> list[Any]:
    """``ray.get`` of every ref, checking for cancellation while they run.

    A worker's own one-line error (e.g. a load failure) is raised as itself; a worker
    that died with its one restart used up becomes a :class:`PanoLoopError`.
    """
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    pending = list(refs)
    while pending:
        cancel.check()
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
    try:
        return ray.get(list(refs))
    except RayTaskError as exc:
        if isinstance(exc.cause, PanoLoopError):
            raise exc.cause from None
        raise
    except RayActorError as exc:
        raise PanoLoopError(
            f"a Ray worker died and its one restart is used up ({type(exc).__name__}); "
            "no output was written",
            fix="check the worker node's memory and logs (`ray logs`), then run again",
        ) from None


def shares(count: int, parts: int) -> list[range]:
    """``count`` items cut into ``parts`` contiguous ranges whose sizes differ by ≤ 1
    (empty ranges dropped)."""
    base, extra = divmod(count, parts)
    out, start = [], 0
    for k in range(parts):
        size = base + (k < extra)
        if size:
            out.append(range(start, start + size))
        start += size
    return out


class RayBackend:
    """The sampler's backend on the driver: model calls go to the workers.

    Latents stay on the driver's CPU; ``windows_per_call = None`` lets the sampler hand
    over a whole wave of windows at once.
    """

    windows_per_call = None

    def __init__(
        self, actors: list[Any], workers: list[dict], target: ClusterAddress, cancel: CancelToken
    ) -> None:
        self.actors = actors
        self.workers = workers
        self.target = target
        self.cancel = cancel
        meta = wait_all([actors[0].meta.remote()], cancel)[0]
        self.latent_channels = meta["latent_channels"]
        self.vae_factor = meta["vae_factor"]
        self.align = meta["align"]
        self.window = meta["window"]
        self.time_factor = meta["time_factor"]
        self.step_rule = meta["step_rule"]
        self._summary = meta["schedule_summary"]
        self.device = torch.device("cpu")
        self._landing: dict[tuple[int, ...], list[int | None]] = {}
        if not meta["lands"]:  # the sampler then steps to the next listed timestep
            self.previous_timestep = None
        if meta["decodes_video"]:  # the sampler then hands over the whole ring (Wan)
            self.decode_video = self._decode_video

    def timesteps(self, steps: int) -> list[int]:
        timesteps, landing = wait_all([self.actors[0].timesteps.remote(steps)], self.cancel)[0]
        self._landing[tuple(timesteps)] = landing
        return timesteps

    def previous_timestep(self, i: int, timesteps: list[int]) -> int | None:
        """Where step ``i`` lands, as the workers' backend says (see the in-process one)."""
        landing = self._landing[tuple(timesteps)]
        return landing[i] if landing else None

    def schedule_summary(self) -> dict[str, Any]:
        return dict(self._summary)

    def encode_prompt(self, prompt: str, negative: str, guidance: float) -> RemotePrompt:
        text = RemotePrompt(prompt, negative, guidance)
        info = wait_all([a.encode.remote(text) for a in self.actors], self.cancel)[0]
        return replace(text, info=tuple(info.items()))

    def predict_windows(
        self,
        windows: list[torch.Tensor],
        t: float,
        prompt: RemotePrompt,
        guidance: float,
        cancel: CancelToken,
    ) -> list[torch.Tensor]:
        """Each worker gets one contiguous share of ``windows``; outputs in their order."""
        import ray

        cancel.check()
        arrays = [w.detach().cpu().numpy() for w in windows]
        parts = shares(len(arrays), len(self.actors))
        refs = [
            actor.predict.remote(ray.put([arrays[k] for k in part]), t, prompt, guidance)
            for actor, part in zip(self.actors, parts, strict=False)
        ]
        outs = [out for share in wait_all(refs, cancel) for out in share]
        return [torch.from_numpy(np.array(out)) for out in outs]

    def encode_still(self, image: np.ndarray, frames: int) -> torch.Tensor:
        """The still's clean latent (C, frames, h, w), encoded on the first worker."""
        import ray

        ref = ray.put(np.asarray(image, dtype=np.float32))
        latent = wait_all([self.actors[0].encode_still.remote(ref, frames)], self.cancel)[0]
        return torch.from_numpy(np.array(latent))

    def _decode_video(self, latent: torch.Tensor, ctx: JobContext) -> list:
        """A ring that decodes as a video (Wan's causal VAE): chunk k of
        :func:`.wan.decode_chunks` on worker k mod N, sent with the wrapped temporal
        context before it (chunks are independent; each worker gets only its latent
        frames), frames reported in order."""
        import ray

        from .wan import DECODE_WARMUP, check_finite_latent, chunk_context, decode_chunks

        check_finite_latent(latent)
        count = latent.shape[1]
        refs = []
        for k, (start, stop) in enumerate(decode_chunks(count)):
            context = latent[:, chunk_context(count, start, stop)].numpy()
            actor = self.actors[k % len(self.actors)]
            refs.append(actor.decode_chunk.remote(ray.put(context), DECODE_WARMUP))
        return [frame for chunk in self._in_order(refs, ctx) for frame in chunk]

    def decode_frames(self, latent: torch.Tensor, ctx: JobContext, *, wrap: bool) -> list:
        """Every frame decoded on the workers, frame f on worker f mod N, reported in order.

        A VAE that had to upcast to float32 (a half-precision overflow) makes the frame
        sequence depend on order, so then every frame is decoded again on one worker, in
        order, from the loaded dtype — what the in-process run does.
        """
        import ray

        count = latent.shape[1]
        refs = [
            self.actors[f % len(self.actors)].decode.remote(ray.put(latent[:, f].numpy()), wrap)
            for f in range(count)
        ]
        decoded = self._in_order(refs, ctx)
        if any(upcast for _, upcast in decoded):
            first = self.actors[0]
            wait_all([a.reset_vae.remote() for a in self.actors], ctx.cancel)
            refs = [first.decode.remote(ray.put(latent[:, f].numpy()), wrap) for f in range(count)]
            decoded = self._in_order(refs, ctx)
        return [frame for frame, _ in decoded]

    def _in_order(self, refs: list[Any], ctx: JobContext) -> list[Any]:
        results = []
        for f, ref in enumerate(refs):
            results.append(wait_all([ref], ctx.cancel)[0])
            ctx.step("decode", f + 1, len(refs))
        return results

    def describe(self) -> dict[str, Any]:
        """The workers' backend, and the workers themselves (``cluster``)."""
        described = wait_all([self.actors[0].describe.remote()], self.cancel)[0]
        restarted = wait_all([a.ready.remote() for a in self.actors], self.cancel)
        described["cluster"] = {
            "engine": "ray",
            "address": self.target.kind,
            "workers": len(self.actors),
            "nodes": [
                {
                    "node_id": w["node_id"],
                    "hostname": w["hostname"],
                    "device": w["device"],
                    "restarted": now["restarted"],
                }
                for w, now in zip(self.workers, restarted, strict=True)
            ],
        }
        return described


# --------------------------------------------------------------------------- the cluster


def worker_resources(count: int | None, device: str) -> tuple[int, str, dict[str, float]]:
    """(workers, device, resources of one worker), checked against the cluster's total:
    BadInput naming the numbers when it could never hold them all. (Resources other jobs
    hold now are waited for, a bounded time, by :func:`place`.)"""
    import ray

    total = ray.cluster_resources()
    gpus = int(total.get("GPU", 0))
    if device == "auto":
        device = "cuda" if gpus >= max(1, count or 1) else "cpu"
    need = {"CPU": 1.0, "GPU": 1.0} if device == "cuda" else {"CPU": 1.0}
    if count is None:
        count = max(1, gpus) if device == "cuda" else 1
    for name, amount in need.items():
        have = total.get(name, 0.0)
        if have < count * amount:
            fits = int(have // amount)
            raise BadInput(
                f"--ray-workers {count}: the Ray cluster has {have:g} {name} in all "
                f"and each worker needs {amount:g}",
                fix=f"use --ray-workers {fits} or add nodes" if fits else "add nodes with them",
            )
    return count, device, need


def place(count: int, need: dict[str, float], cancel: CancelToken) -> Any:
    """A placement group of ``count`` worker bundles, ready within PLACEMENT_TIMEOUT_S."""
    import time

    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    group = placement_group([dict(need)] * count, strategy="SPREAD")
    deadline = time.monotonic() + PLACEMENT_TIMEOUT_S
    try:
        while not ray.wait([group.ready()], timeout=POLL_S)[0]:
            cancel.check()
            if time.monotonic() > deadline:
                free = {k: v for k, v in ray.available_resources().items() if k in need}
                raise BadInput(
                    f"--ray-workers {count}: the cluster could not place them within "
                    f"{PLACEMENT_TIMEOUT_S:g} s ({free} free now: other jobs hold the rest)",
                    fix="use fewer workers, wait for the other jobs, or add nodes",
                )
    except BaseException:
        remove_placement_group(group)
        raise
    return group


def check_nodes_memory(
    group: Any,
    need: dict[str, float],
    spec: LoadSpec,
    memory: tuple[Any, Any],
    target: ClusterAddress,
    cancel: CancelToken,
) -> None:
    """Before any worker loads: every bundle of ``group`` measures its device's free
    memory on its node (:func:`measure_memory`, a task in that bundle), and the driver
    checks the estimate ``memory`` = (model shape, :class:`.memory.JobSize`) against it
    (:func:`.memory.check_workers_fit`). CPU workers on one node share its RAM, counted
    from where the bundles were placed, and with the driver's ring and frames when the
    driver runs there; a CUDA worker has its GPU to itself. BadInput when any fails."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from .memory import check_workers_fit

    shape, size = memory
    size = replace(size, dtype=worker_dtype(spec, spec.device))
    # GPUs named here, not in .options(): then Ray ends the task's process after it (its
    # max_calls=1 default for GPU functions), so no idle process keeps a CUDA context.
    measure = ray.remote(num_cpus=need["CPU"], num_gpus=need.get("GPU", 0))(measure_memory)
    refs = [
        measure.options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                group, placement_group_bundle_index=k
            ),
        ).remote(spec.device)
        for k in range(group.bundle_count)
    ]
    measured = wait_all(refs, cancel)
    here = None if target.kind == "client" else ray.get_runtime_context().get_node_id()
    per_node = Counter(m["node_id"] for m in measured)
    for m in measured:
        check_workers_fit(
            shape,
            size,
            spec.device,
            workers=1 if spec.device == "cuda" else per_node[m["node_id"]],
            driver=m["node_id"] == here,
            free=m["free"],
            where=m["hostname"] if spec.device != "cuda" else f"a GPU of {m['hostname']}",
        )


@contextlib.contextmanager
def ray_backend(
    target: ClusterAddress,
    workers: int | None,
    spec: LoadSpec,
    ctx: JobContext,
    *,
    memory: tuple[Any, Any] | None = None,
) -> Iterator[RayBackend]:
    """Connect, place and load the workers; yield the driver's backend; end everything.

    ``memory`` (model shape, :class:`.memory.JobSize`) is checked on the placed workers'
    nodes before any loads (:func:`check_nodes_memory`). On the way out — done, failed,
    cancelled or interrupted — every worker is killed, the placement group removed, and
    a local cluster started here shut down.
    """
    import ray
    from ray.util.placement_group import remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    cluster = contextlib.ExitStack()  # closed last: the workers end before the cluster
    cluster.enter_context(connected(target))
    actors: list[Any] = []
    group = None
    try:
        count, device, need = worker_resources(workers, spec.device)
        group = place(count, need, ctx.cancel)
        spec = replace(spec, device=device)
        if memory is not None:
            check_nodes_memory(group, need, spec, memory, target, ctx.cancel)
        worker_class = ray.remote(GenerateWorker)
        job = uuid.uuid4().hex[:8]
        for k in range(count):
            strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=k)
            actors.append(
                worker_class.options(
                    num_cpus=need["CPU"],
                    num_gpus=need.get("GPU", 0),
                    max_restarts=1,
                    max_task_retries=1,
                    scheduling_strategy=strategy,
                    name=f"{WORKER_NAME}-{job}-{k}",
                ).remote(spec)
            )
        with ctx.timed("load"):
            infos = wait_all([actor.ready.remote() for actor in actors], ctx.cancel)
            backend = RayBackend(actors, infos, target, ctx.cancel)
        yield backend
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        if group is not None:
            with contextlib.suppress(Exception):
                remove_placement_group(group)
        cluster.close()
