"""Joining a Ray cluster, or starting one on this machine, for the cluster paths.

``--cluster`` takes ``local`` (a private Ray instance on this machine with its CPUs, no
dashboard, gone when the job ends) or the address of a running cluster: ``HOST:PORT``
of its head (``ray start --head`` prints it; port 6379 when left out) or a Ray Client
address ``ray://HOST:PORT``. An address is checked with a plain TCP connection first, so
a wrong one is refused within :data:`REACH_TIMEOUT_S` seconds naming it, instead of
Ray's own retries (about a minute).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..contract import BadInput, PanoLoopError

#: ``--cluster`` value that starts a Ray instance on this machine.
LOCAL = "local"
#: Port of a head node (``ray start --head``) and of a Ray Client server by default.
DEFAULT_PORT, DEFAULT_CLIENT_PORT = 6379, 10001
#: Seconds an address may take to accept a TCP connection before it is refused.
REACH_TIMEOUT_S = 3.0
#: Tries to start a local cluster (its node may miss Ray's 30 s start-up limit when busy).
LOCAL_START_ATTEMPTS = 2
#: Where Ray comes from, said whenever it is missing.
RAY_INSTALL_FIX = (
    "install the cluster extra in the engine's Python: pip install 'panoloop-engine[cluster]' "
    "(in Blender: Preferences > Add-ons > PanoLoop, tick Cluster (Ray), Set Up Engine)"
)


@dataclass(frozen=True)
class ClusterAddress:
    """A parsed ``--cluster`` value: ``local``, or a host and port to join."""

    text: str
    host: str | None = None
    port: int | None = None

    @property
    def local(self) -> bool:
        return self.host is None


def import_ray() -> Any:
    """The ``ray`` module; :class:`BadInput` saying how to install it when it is missing."""
    # Ray is the optional ``cluster`` extra: imported here, on the one path that needs it,
    # so the engine runs without it and its absence is one line instead of a traceback.
    try:
        import ray
    except ImportError:
        raise BadInput("Ray is not installed in this Python", RAY_INSTALL_FIX) from None
    return ray


def parse_cluster(text: str) -> ClusterAddress:
    """``local``, ``HOST[:PORT]`` or ``ray://HOST[:PORT]``; BadInput naming anything else."""
    value = text.strip()
    if value == LOCAL:
        return ClusterAddress(LOCAL)
    client = value.startswith("ray://")
    rest = value[len("ray://") :] if client else value
    default = DEFAULT_CLIENT_PORT if client else DEFAULT_PORT
    if rest.startswith("["):  # [IPv6]:port
        host, _, tail = rest[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not host or any(c.isspace() or c in "/@" for c in host):
        raise BadInput(
            f"--cluster {text!r} is not 'local' or a cluster address HOST:PORT",
            "give the address 'ray start --head' printed (e.g. 192.168.1.20:6379), or 'local'",
        )
    try:
        port = int(port_text) if port_text else default
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise BadInput(f"--cluster {text!r}: the port must be a number from 1 to 65535")
    return ClusterAddress(value, host, port)


def check_reachable(address: ClusterAddress, timeout: float = REACH_TIMEOUT_S) -> None:
    """Refuse (BadInput, naming the address) a cluster nothing answers at within ``timeout``."""
    if address.local:
        return
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout):
            return
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
    raise BadInput(
        f"cannot reach the Ray cluster at {address.text} ({reason} within {timeout:g} s)",
        "start it there with 'ray start --head', or correct the Render Cluster address",
    )


@contextlib.contextmanager
def connected(
    address: ClusterAddress,
    *,
    local_cpus: int | None = None,
    runtime_env: dict[str, Any] | None = None,
) -> Iterator[Any]:
    """``ray`` connected to the cluster for the block; disconnected (a local one stopped)
    afterwards, whatever happens, so the cluster runs none of this job's tasks after it."""
    ray = import_ray()
    # No usage reports from a render farm: the engine never calls home.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # The add-on points the engine's bytecode cache at an empty folder of its own; Ray's
    # processes would then compile all of Ray again on start-up, which on a busy machine
    # outlasts Ray's 30 s limit for a local node. They use the installed bytecode instead
    # (the job's own modules are unpacked by Ray in its session folder, not the extension).
    os.environ.pop("PYTHONPYCACHEPREFIX", None)
    options: dict[str, Any] = {"runtime_env": runtime_env, "log_to_driver": False}
    options["logging_level"] = "WARNING"
    if address.local:
        options |= {"address": "local", "include_dashboard": False}
        options["num_cpus"] = local_cpus or os.cpu_count() or 1
    else:
        check_reachable(address)
        options["address"] = address.text
    _init(ray, options, address)
    try:
        yield ray
    finally:
        ray.shutdown()


def _init(ray: Any, options: dict[str, Any], address: ClusterAddress) -> None:
    """``ray.init``; a local start that times out (Ray gives its node 30 s, which a busy
    machine can miss) is tried once more; any failure becomes one line naming where."""
    attempts = LOCAL_START_ATTEMPTS if address.local else 1
    for attempt in range(1, attempts + 1):
        try:
            ray.init(**options)
            return
        except Exception as exc:  # Ray raises a bare Exception when its node misses start-up
            ray.shutdown()
            if attempt < attempts:
                continue
            where = "start Ray on this machine" if address.local else f"join {address.text}"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise PanoLoopError(
                f"could not {where}: {first}",
                "a local cluster needs a machine that is not overloaded; for an address, "
                "check 'ray status --address ADDRESS' on the head node (a cluster with token "
                "authentication needs its token here too, ~/.ray/auth_token)",
            ) from None


def largest_node_cpus(ray: Any) -> int:
    """CPUs of the biggest live node: no task asking for more could ever be placed."""
    cpus = [int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    return max(cpus, default=0)
