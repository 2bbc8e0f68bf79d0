"""Joining a Ray cluster, or starting one on this machine: the one connection layer of
every cluster path (``render-cluster --cluster``, ``generate --ray``).

The value a user gives the flag (:func:`parse_cluster`) is one of

- ``local`` — a private Ray instance on this machine (its CPUs, no dashboard) started for
  the job and stopped after it; its session folder lies under ``RAY_TMPDIR`` (else
  ``/tmp``: Ray's Unix socket paths must stay short) and is removed with it. A process
  already connected to Ray (a test session, a notebook) keeps that connection instead;
- ``auto`` — the cluster ``ray start`` runs on this machine;
- ``HOST[:PORT]`` — the head of a running cluster (``ray start --head`` prints it; port
  :data:`DEFAULT_PORT` when left out; ``[IPv6]:PORT`` for an IPv6 host);
- ``ray://HOST[:PORT]`` — a Ray Client server (port :data:`DEFAULT_CLIENT_PORT`).

An address is checked with a plain TCP connection first (:func:`check_reachable`), so a
wrong one is refused within :data:`REACH_TIMEOUT_S` seconds naming it, instead of Ray's
own retries (about a minute). Every message names the flag and the value as typed.

Ray is an optional extra (``pip install 'panoloop-engine[cluster]'``): :func:`import_ray`
imports it on the one path that needs it, so the engine runs without it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..contract import BadInput, PanoLoopError

#: Starts a Ray instance on this machine for the job.
LOCAL = "local"
#: Joins the cluster ``ray start`` runs on this machine.
AUTO = "auto"
#: Port of a head node (``ray start --head``) and of a Ray Client server by default.
DEFAULT_PORT, DEFAULT_CLIENT_PORT = 6379, 10001
#: Seconds an address may take to accept a TCP connection before it is refused.
REACH_TIMEOUT_S = 3.0
#: Tries to start a local cluster (its node may miss Ray's 30 s start-up limit when busy).
LOCAL_START_ATTEMPTS = 2
#: The Ray release the engine is tested with (the ``cluster`` extra pins it).
RAY_REQUIREMENT = "ray==2.60.0"
#: Where Ray comes from, said whenever it is missing.
RAY_INSTALL_FIX = (
    f"install the cluster extra in the engine's Python: pip install 'panoloop-engine[cluster]' "
    f"({RAY_REQUIREMENT}; in Blender: Preferences > Add-ons > PanoLoop, tick Cluster (Ray), "
    "Set Up Engine)"
)
#: Where a local cluster keeps its session unless ``RAY_TMPDIR`` (Ray's own variable) says.
LOCAL_TEMP_ROOT = "/tmp"
#: A local cluster's session folder: ``panoloop-ray-…`` under that root.
SESSION_PREFIX = "panoloop-ray-"
#: The extension folder, holding ``engine/`` and ``blender_addon/`` side by side.
EXTENSION_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ClusterAddress:
    """A parsed cluster value: ``kind`` is ``local``, ``auto``, ``gcs`` (HOST:PORT of a
    head) or ``client`` (``ray://HOST:PORT``); ``text`` is what the user typed and
    ``flag`` where (``--ray``, ``--cluster``), so messages name both."""

    text: str
    kind: str
    host: str | None = None
    port: int | None = None
    flag: str = "--cluster"

    @property
    def local(self) -> bool:
        return self.kind == LOCAL

    @property
    def given(self) -> str:
        """The flag and the value as typed, to start a message with."""
        return f"{self.flag} {self.text!r}"

    @property
    def endpoint(self) -> str:
        """``HOST:PORT`` (``[HOST]:PORT`` for IPv6) with the default port filled in."""
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def ray_address(self) -> str:
        """What ``ray.init(address=…)`` takes for this value."""
        if self.kind in (LOCAL, AUTO):
            return self.kind
        return f"ray://{self.endpoint}" if self.kind == "client" else self.endpoint


def import_ray(flag: str = "--cluster") -> Any:
    """The ``ray`` module; :class:`BadInput` saying how to install it when it is missing."""
    # Ray is the optional ``cluster`` extra: imported here, on the one path that needs it,
    # so the engine runs without it and its absence is one line instead of a traceback.
    try:
        import ray
    except ImportError:
        raise BadInput(f"{flag} needs Ray, which is not installed in this Python",
                       RAY_INSTALL_FIX) from None  # fmt: skip
    return ray


def parse_cluster(text: str, flag: str = "--cluster") -> ClusterAddress:
    """``local``, ``auto``, ``HOST[:PORT]``, ``[IPv6]:PORT`` or ``ray://HOST[:PORT]``
    given to ``flag``; BadInput naming the flag and the value for anything else."""
    value = text.strip()
    if value in (LOCAL, AUTO):
        return ClusterAddress(value, value, flag=flag)
    client = value.startswith("ray://")
    rest = value.removeprefix("ray://")
    if rest.startswith("["):  # [IPv6]:port
        host, _, tail = rest[1:].partition("]")
        port_text = tail.removeprefix(":")
        well_formed = tail == "" or tail.startswith(":")
    else:
        host, _, port_text = rest.rpartition(":") if ":" in rest else (rest, "", "")
        well_formed = ":" not in host  # a bare IPv6 address needs its brackets
    if not well_formed or not host or any(c.isspace() or c in "/@[]" for c in host):
        raise BadInput(
            f"{flag} {text!r} is not local, auto, HOST[:PORT] or ray://HOST[:PORT]",
            "give the address 'ray start --head' printed (e.g. 192.168.1.20:6379), or local",
        )
    default = DEFAULT_CLIENT_PORT if client else DEFAULT_PORT
    digits = port_text.isascii() and port_text.isdigit()
    port = int(port_text) if digits else default if not port_text else -1
    if not 0 < port < 65536:
        raise BadInput(f"{flag} {text!r}: the port must be a number from 1 to 65535")
    return ClusterAddress(value, "client" if client else "gcs", host, port, flag)


def check_reachable(address: ClusterAddress, timeout: float = REACH_TIMEOUT_S) -> None:
    """Refuse (BadInput, naming the value) a head nothing answers at within ``timeout``
    seconds; ``local`` and ``auto`` have no address to check."""
    if address.host is None:
        return
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout):
            return
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
    raise BadInput(
        f"{address.given}: cannot reach the Ray cluster at {address.endpoint} "
        f"({reason} within {timeout:g} s)",
        "start it there with 'ray start --head', or correct the address"
        + (" (in Blender: the Render Cluster preference)" if address.flag == "--cluster" else ""),
    )


@contextlib.contextmanager
def own_sigterm() -> Iterator[None]:
    """Keep this process's SIGTERM handler across ``ray.init``, which installs its own
    (exit at once): the CLI's (unwind like Ctrl-C) and the worker's (cancel at the next
    step) must stay, so SIGTERM still ends the job cleanly, workers and cluster included."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def runtime_env(address: ClusterAddress, packages: Sequence[str]) -> dict[str, Any]:
    """How Ray's workers get ``packages`` (folders of :data:`EXTENSION_DIR`): a local
    cluster's import them from here (``PYTHONPATH``); a remote cluster receives them
    with the job (``py_modules``), so its nodes need only Python and the requirements."""
    if address.local:
        paths = (str(EXTENSION_DIR), os.environ.get("PYTHONPATH"))
        return {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}}
    return {"py_modules": [str(EXTENSION_DIR / name) for name in packages]}


@contextlib.contextmanager
def connected(
    address: ClusterAddress,
    *,
    packages: Sequence[str] = ("engine",),
    local_cpus: int | None = None,
) -> Iterator[Any]:
    """``ray`` connected to the cluster for the block, its workers able to import
    ``packages`` (:func:`runtime_env`); ``local_cpus`` CPUs for a local cluster (default:
    this machine's). Afterwards, whatever happens, this process disconnects (a local
    cluster started here is stopped and its session folder removed), so the cluster runs
    none of this job's work after it. A ``local`` job in a process already connected to
    Ray uses that connection and leaves it as it was."""
    ray = import_ray(address.flag)
    if address.local and ray.is_initialized():
        yield ray
        return
    check_reachable(address)
    # No usage reports from a render farm: the engine never calls home.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # The add-on points the engine's bytecode cache at an empty folder of its own; Ray's
    # processes would then compile all of Ray again on start-up, which on a busy machine
    # outlasts Ray's 30 s limit for a local node. They use the installed bytecode instead.
    os.environ.pop("PYTHONPYCACHEPREFIX", None)
    options: dict[str, Any] = {"address": address.ray_address, "log_to_driver": False}
    options |= {"logging_level": "WARNING", "runtime_env": runtime_env(address, packages)}
    if address.local:
        options |= {"include_dashboard": False, "num_cpus": local_cpus or os.cpu_count() or 1}
    session = _init(ray, options, address)
    try:
        yield ray
    finally:
        ray.shutdown()
        if session is not None:
            shutil.rmtree(session, ignore_errors=True)


def _session_root() -> str:
    """Where a local cluster's session folder goes: ``RAY_TMPDIR``, else /tmp."""
    root = os.environ.get("RAY_TMPDIR") or LOCAL_TEMP_ROOT
    return root if os.path.isdir(root) else tempfile.gettempdir()


def _init(ray: Any, options: dict[str, Any], address: ClusterAddress) -> str | None:
    """``ray.init`` keeping this process's SIGTERM handler; the session folder of a local
    cluster (None otherwise). A local start that fails (Ray gives its node 30 s, which a
    busy machine can miss) is tried once more; any failure becomes one line naming where."""
    attempts = LOCAL_START_ATTEMPTS if address.local else 1
    attempt = 1
    while True:
        session = (
            tempfile.mkdtemp(prefix=SESSION_PREFIX, dir=_session_root()) if address.local else None
        )
        try:
            with own_sigterm():
                ray.init(**options, **({"_temp_dir": session} if session else {}))
            return session
        except Exception as exc:  # Ray raises a bare Exception when its node misses start-up
            ray.shutdown()
            if session is not None:
                shutil.rmtree(session, ignore_errors=True)
            if attempt >= attempts:
                raise _init_error(exc, address) from None
        attempt += 1


def _init_error(exc: Exception, address: ClusterAddress) -> PanoLoopError:
    """Why ``ray.init`` failed, in one line naming the value: BadInput when nothing
    there is a Ray cluster (e.g. ``auto`` with none running), else PanoLoopError."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else repr(exc)
    if address.local:
        return PanoLoopError(
            f"{address.given}: could not start Ray on this machine: {first}",
            "a local cluster needs a machine that is not overloaded; try again",
        )
    where = "on this machine" if address.kind == AUTO else f"at {address.endpoint}"
    if isinstance(exc, ConnectionError):
        return BadInput(
            f"{address.given}: no Ray cluster to join {where}: {first}",
            "start one with 'ray start --head', or correct the address",
        )
    return PanoLoopError(
        f"{address.given}: could not join the Ray cluster {where}: {first}",
        f"run the same Python and {RAY_REQUIREMENT} here as on the cluster; check "
        "'ray status --address ADDRESS' on the head (a cluster with token authentication "
        "needs its token here too, ~/.ray/auth_token)",
    )


def largest_node_cpus(ray: Any) -> int:
    """CPUs of the biggest live node: no task asking for more could ever be placed."""
    cpus = [int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    return max(cpus, default=0)
