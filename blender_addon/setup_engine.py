"""Create PanoLoop's engine environment: ``python setup_engine.py --env DIR --pyproject FILE``.

Run by the add-on (in Blender's own Python, as a subprocess through the runner) when
the user clicks *Set Up Engine*, and only when Blender allows online access. It makes a
virtual environment and pip-installs the engine's pinned requirements, read from the
extension's ``pyproject.toml`` so there is one list: ``[project] dependencies`` (the
still-to-loop side) and the ``generate`` extra (torch, diffusers …, the prompt side).

Which torch fits is decided by :func:`plan_install`, a pure function of the platform and
of what :func:`probe_platform` finds (``nvidia-smi``), so every platform's plan is tested
on any machine:

- Windows, Linux with an NVIDIA GPU: the CUDA build from PyTorch's own wheel index
  (PyPI's Windows wheel has no CUDA; the index is chosen by the driver and the GPU);
- Linux without one: the CPU build (PyPI's x86_64 wheel would pull gigabytes of CUDA);
- macOS on Apple silicon (14 or newer): PyPI's standard wheel, which runs on MPS;
- macOS on Intel: PyTorch publishes no torch 2.13 wheel for it, so the prompt path is
  refused in one clear note and the still-to-loop side is installed alone;
- ``--mode animate`` ("Animate only"): no torch at all.

Speaks the worker's protocol: JSON lines on stdout (``progress`` carries pip's current
line as ``detail``), pip's own output also goes to stderr (the log). After installing, the
engine's ``device`` check runs in the new environment and its result (torch version and
the device ``generate`` will use) is written to ``--record`` for the preferences to show.
Standard library only; no bpy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

STAGE = "set up engine"
#: The extension folder: it holds ``engine/`` next to ``blender_addon/``.
EXTENSION_DIR = Path(__file__).resolve().parents[1]

#: PyTorch's own wheel index; ``/<build>`` is appended (``cu130``, ``cu126``, ``cpu``).
TORCH_INDEX = "https://download.pytorch.org/whl"
#: torch 2.13's CUDA builds (PyTorch's support matrix for 2.12–2.14: 12.6 legacy, 13.0
#: stable, 13.2 experimental). 13.0 needs a driver that reports CUDA 13.0 (R580 or newer)
#: and a Turing or newer GPU; 12.6 runs on any CUDA 12 driver (R525+) and is the only one
#: for Maxwell, Pascal and Volta, but has no Blackwell kernels.
CUDA_STABLE, CUDA_LEGACY = "cu130", "cu126"
CUDA_STABLE_VERSION, CUDA_LEGACY_DRIVER = (13, 0), (12, 0)
TURING, BLACKWELL, MAXWELL = (7, 5), (10, 0), (5, 0)
#: PyPI's torch 2.13 for Apple silicon is tagged macosx_14_0_arm64.
MACOS_TORCH_MIN = (14, 0)
#: pip that prints ``Progress N of M`` lines (``--progress-bar raw``, pip ≥ 24.1); Blender's
#: bundled pip may be older, so the new environment gets this one first.
PIP_REQUIREMENT = "pip==26.0.1"
#: Seconds ``nvidia-smi`` may take before the GPU is taken as absent.
NVIDIA_SMI_TIMEOUT_S = 20.0

Mode = Literal["full", "animate"]


@dataclass(frozen=True)
class NvidiaGpu:
    """What ``nvidia-smi`` says about GPU 0 (the one torch uses as ``cuda``)."""

    name: str
    #: Compute capability (8, 9) for an RTX 4090; None where the driver cannot tell.
    compute_capability: tuple[int, int] | None
    #: The newest CUDA the driver runs ("CUDA Version" in nvidia-smi's header).
    driver_cuda: tuple[int, int] | None


@dataclass(frozen=True)
class PlatformFacts:
    """The machine as the plan sees it (``platform.system()``/``machine()`` spelling)."""

    system: str  # "Windows", "Linux", "Darwin"
    machine: str  # "AMD64", "x86_64", "arm64", "aarch64"
    macos_version: tuple[int, int] | None = None
    nvidia: NvidiaGpu | None = None


@dataclass(frozen=True)
class InstallPlan:
    """What Set Up Engine installs, as the exact command lines it runs."""

    mode: Mode
    #: ``cu130``, ``cu126``, ``cpu`` (PyTorch's index), ``pypi`` (Apple silicon) or None.
    torch_build: str | None
    #: The device ``generate --device auto`` should find: cuda, mps, cpu, or none.
    expected_device: str
    #: Every command, in order, each a full argv starting with the environment's Python.
    commands: tuple[tuple[str, ...], ...]
    #: What the user is told: why this build, or why prompts cannot run here.
    notes: tuple[str, ...] = field(default=())

    @property
    def steps(self) -> int:
        """Progress steps: create the environment, each command, the device check."""
        return len(self.commands) + 2


@dataclass(frozen=True)
class Requirements:
    """The pinned lists of the extension's ``pyproject.toml``."""

    base: tuple[str, ...]
    generate: tuple[str, ...]
    #: The ``cluster`` extra (Ray), installed on request; empty where the file has none.
    cluster: tuple[str, ...] = ()

    @property
    def torch(self) -> str:
        """The ``torch==X`` pin of the generate extra."""
        for requirement in self.generate:
            if requirement_name(requirement) == "torch":
                return requirement
        raise ValueError("the generate extra pins no torch")

    @property
    def generate_without_torch(self) -> tuple[str, ...]:
        return tuple(r for r in self.generate if requirement_name(r) != "torch")


# --------------------------------------------------------------------------- the plan


def plan_install(
    facts: PlatformFacts, mode: Mode, reqs: Requirements, python: str, *, cluster: bool = False
) -> InstallPlan:
    """The install plan for this platform: pure, so every platform is tested anywhere.

    ``python`` is the new environment's interpreter; commands are its ``-m pip install``
    lines: first pip itself, then (full mode) torch alone from the index that fits, pinned
    with its build (``torch==2.13.0+cu130``, so a rerun that changes build reinstalls it),
    then the rest without torch (its dependants take the torch already installed).
    ``cluster`` adds the ``cluster`` extra (Ray, for a Render Cluster) to the last command.
    """
    plan = _plan_install(facts, mode, reqs, python)
    if not cluster:
        return plan
    *first, last = plan.commands
    notes = (*plan.notes, "Cluster (Ray): renders can run on a Ray cluster")
    return InstallPlan(plan.mode, plan.torch_build, plan.expected_device,
                       (*first, (*last, *reqs.cluster)), notes)  # fmt: skip


def _plan_install(facts: PlatformFacts, mode: Mode, reqs: Requirements, python: str) -> InstallPlan:
    """:func:`plan_install` without the cluster extra."""
    pip = (python, "-m", "pip", "install")
    upgrade_pip = (*pip, PIP_REQUIREMENT)
    raw = (*pip, "--progress-bar", "raw")
    if mode == "animate":
        return InstallPlan(
            mode="animate",
            torch_build=None,
            expected_device="none",
            commands=(upgrade_pip, (*raw, *reqs.base)),
            notes=("Animate only: no torch; Generate World needs a full Set Up Engine",),
        )
    build, device, notes = torch_build_for(facts)
    if build is None:  # the prompt path cannot run here: install the still-to-loop side
        animate = _plan_install(facts, "animate", reqs, python)
        return InstallPlan("animate", None, "none", animate.commands, notes)
    version = requirement_version(reqs.torch)
    if build == "pypi":
        torch = (*raw, f"torch=={version}")
    else:
        torch = (*raw, "--index-url", f"{TORCH_INDEX}/{build}", f"torch=={version}+{build}")
    rest = (*raw, *reqs.base, *reqs.generate_without_torch)
    return InstallPlan("full", build, device, (upgrade_pip, torch, rest), notes)


def torch_build_for(facts: PlatformFacts) -> tuple[str | None, str, tuple[str, ...]]:
    """(torch build or None when prompts cannot run here, expected device, notes)."""
    system, machine = facts.system, facts.machine.lower()
    if system == "Darwin":
        if machine != "arm64":
            return None, "none", (
                "Intel Mac: PyTorch publishes no torch 2.13 for macOS on Intel (its last "
                "Intel-Mac build was 2.2), so Generate World cannot run here; Animate HDRI, "
                "Render All Cameras and Export VR are installed and work",
            )  # fmt: skip
        if facts.macos_version is not None and facts.macos_version < MACOS_TORCH_MIN:
            shown = ".".join(map(str, facts.macos_version))
            return None, "none", (
                f"macOS {shown}: torch 2.13 for Apple silicon needs macOS 14 or newer, so "
                "Generate World cannot run here until macOS is updated; Animate HDRI and the "
                "rest are installed",
            )  # fmt: skip
        return "pypi", "mps", ("Apple silicon: PyPI's torch, running on the GPU through MPS",)
    if system not in ("Windows", "Linux") or machine not in ("amd64", "x86_64", "aarch64"):
        return None, "none", (
            f"{system} {facts.machine}: PyTorch publishes no torch 2.13 for this platform, so "
            "Generate World cannot run here; Animate HDRI and the rest are installed",
        )  # fmt: skip
    if facts.nvidia is None:
        return "cpu", "cpu", (
            "no NVIDIA GPU found (nvidia-smi): torch's CPU build; Generate World runs, slowly",
        )  # fmt: skip
    return cuda_build_for(facts.nvidia)


def cuda_build_for(gpu: NvidiaGpu) -> tuple[str, str, tuple[str, ...]]:
    """The CUDA build that runs on this GPU with this driver; the CPU build if none does."""
    cc, driver = gpu.compute_capability, gpu.driver_cuda
    driver_text = ".".join(map(str, driver)) if driver else "unknown"
    found = f"{gpu.name} (driver CUDA {driver_text})"
    update = "update the NVIDIA driver (R580 or newer) and click Set Up Engine again"
    if cc is not None and cc < MAXWELL:
        return "cpu", "cpu", (f"{found} is older than any torch 2.13 CUDA build: CPU build",)
    if driver is None:
        # nvidia-smi answered but without a CUDA version: take the build the GPU needs.
        build = CUDA_STABLE if cc is not None and cc >= BLACKWELL else CUDA_LEGACY
        return build, "cuda", (f"{found}: CUDA build {build}",)
    if driver >= CUDA_STABLE_VERSION and (cc is None or cc >= TURING):
        return CUDA_STABLE, "cuda", (f"{found}: CUDA build {CUDA_STABLE}",)
    if driver >= CUDA_LEGACY_DRIVER and (cc is None or cc < BLACKWELL):
        return CUDA_LEGACY, "cuda", (f"{found}: CUDA build {CUDA_LEGACY}",)
    return "cpu", "cpu", (
        f"{found}: this driver is too old for torch 2.13's CUDA builds on this GPU, so the "
        f"CPU build is installed and Generate World runs slowly; {update}",
    )  # fmt: skip


def requirement_name(requirement: str) -> str:
    """``"huggingface_hub==2.4.0"`` → ``"huggingface-hub"`` (PEP 503 normalised)."""
    name = re.split(r"[\s\[<>=!~;@]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_version(requirement: str) -> str:
    """The version of an exact ``name==X`` pin."""
    match = re.fullmatch(r"\s*[A-Za-z0-9_.\-]+\s*==\s*([A-Za-z0-9_.+!\-]+)\s*", requirement)
    if not match:
        raise ValueError(f"{requirement!r} is not an exact pin (name==version)")
    return match.group(1)


def read_requirements(pyproject: Path) -> Requirements:
    """The base list and the ``generate`` extra of the extension's ``pyproject.toml``."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    base = tuple(project.get("dependencies", ()))
    generate = tuple(project.get("optional-dependencies", {}).get("generate", ()))
    if not base or not generate:
        raise ValueError(f"{pyproject} lists no [project] dependencies or no generate extra")
    cluster = tuple(project.get("optional-dependencies", {}).get("cluster", ()))
    return Requirements(base=base, generate=generate, cluster=cluster)


# --------------------------------------------------------------------------- the machine


def parse_driver_cuda(text: str) -> tuple[int, int] | None:
    """``CUDA Version: 13.0`` in ``nvidia-smi``'s header → (13, 0)."""
    match = re.search(r"CUDA Version\s*:\s*(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def parse_gpu_line(line: str) -> tuple[str, tuple[int, int] | None] | None:
    """One ``--query-gpu=name,compute_cap --format=csv,noheader`` line → (name, cc)."""
    parts = [p.strip() for p in line.split(",")]
    if not parts or not parts[0]:
        return None
    cc = None
    if len(parts) > 1:
        match = re.fullmatch(r"(\d+)\.(\d+)", parts[1])
        cc = (int(match.group(1)), int(match.group(2))) if match else None
    return parts[0], cc


def find_nvidia_smi() -> str | None:
    found = shutil.which("nvidia-smi")
    if found:
        return found
    # Older Windows drivers install it here without putting it on PATH.
    legacy = Path(r"C:\Program Files\NVIDIA Corporation\NVSMI\nvidia-smi.exe")
    return str(legacy) if sys.platform == "win32" and legacy.is_file() else None


def probe_nvidia() -> NvidiaGpu | None:
    """GPU 0 as ``nvidia-smi`` reports it; None without a driver or a GPU."""
    smi = find_nvidia_smi()
    if smi is None:
        return None

    def run(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(
                [smi, *args], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired):
            return None

    query = run("--query-gpu=name,compute_cap", "--format=csv,noheader")
    if query is None or query.returncode != 0:  # drivers before compute_cap was queryable
        query = run("--query-gpu=name", "--format=csv,noheader")
    if query is None or query.returncode != 0:
        return None  # nvidia-smi without a working driver or GPU
    lines = [ln for ln in query.stdout.splitlines() if ln.strip()]
    first = parse_gpu_line(lines[0]) if lines else None
    if first is None:
        return None
    header = run()
    driver = parse_driver_cuda(header.stdout) if header and header.returncode == 0 else None
    return NvidiaGpu(name=first[0], compute_capability=first[1], driver_cuda=driver)


def probe_platform() -> PlatformFacts:
    """This machine's facts for :func:`plan_install` (runs ``nvidia-smi`` if present)."""
    system = platform.system()
    macos = None
    if system == "Darwin":
        numbers = [int(n) for n in re.findall(r"\d+", platform.mac_ver()[0])] + [0, 0]
        macos = (numbers[0], numbers[1])
    nvidia = probe_nvidia() if system in ("Windows", "Linux") else None
    return PlatformFacts(system, platform.machine(), macos, nvidia)


# --------------------------------------------------------------------------- running it


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def env_python(env_dir: Path) -> Path:
    if sys.platform == "win32":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


#: ``Progress 262144 of 1240907`` (pip's ``--progress-bar raw``), bytes of the download.
_RAW_PROGRESS = re.compile(r"Progress (\d+) of (\d+)")


def progress_detail(line: str, current: str) -> str | None:
    """The progress text for one pip output line, or None when it changes nothing.

    A download's raw byte counts become a percentage after the file's own line
    ("Downloading torch-… (2.6 GB) 41%"); any other line is shown as pip wrote it.
    """
    line = line.strip()
    if not line:
        return None
    match = _RAW_PROGRESS.fullmatch(line)
    if match is None:
        return line
    done, total = int(match.group(1)), int(match.group(2))
    head = re.sub(r" \d+%$", "", current)
    return f"{head} {100 * done // total}%" if total > 0 else None


def run_pip(command: tuple[str, ...], step: int, total: int, label: str) -> None:
    """Run one pip command; its lines go to the log and, as ``detail``, to the add-on."""
    proc = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
    )
    assert proc.stdout is not None
    detail = ""
    for line in proc.stdout:
        sys.stderr.write(line)
        new = progress_detail(line, detail)
        if new is None or new == detail:
            continue  # e.g. the next byte count within the same percent
        detail = new
        emit("progress", stage=f"{STAGE}: {label}", step=step, total=total, detail=detail)
    if proc.wait() != 0:
        raise subprocess.CalledProcessError(proc.returncode, command)


def command_label(command: tuple[str, ...]) -> str:
    """What a plan command installs, for the progress line."""
    packages = [a for a in command[4:] if not a.startswith("-") and "://" not in a]
    packages = [a for a in packages if a != "raw"]
    if len(packages) == 1:
        return f"installing {packages[0]}"
    return f"installing {len(packages)} packages"


def check_device(python: str, record: Path | None) -> dict[str, object]:
    """Run ``python -m engine device`` in the new environment; its JSON result."""
    args = [python, "-m", "engine", "device", "--json"]
    if record is not None:
        args += ["--record", str(record)]
    # The engine package is the one shipped beside this file, in the extension folder.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(EXTENSION_DIR), env.get("PYTHONPATH")]))
    result = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    sys.stderr.write(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", required=True, type=Path)
    parser.add_argument("--pyproject", required=True, type=Path)
    parser.add_argument(
        "--mode",
        choices=("full", "animate"),
        default="full",
        help="full: animate and generate (torch); animate: the still-to-loop side, no torch",
    )
    parser.add_argument(
        "--cluster", action="store_true", help="also install Ray (the cluster extra)"
    )
    parser.add_argument("--record", type=Path, help="where the device check's result goes")
    parser.add_argument(
        "--plan-only", action="store_true", help="print this machine's plan as JSON only"
    )
    args = parser.parse_args(argv)
    try:
        reqs = read_requirements(args.pyproject)
        python = str(env_python(args.env))
        if args.cluster and not reqs.cluster:
            raise ValueError(f"{args.pyproject} has no cluster extra to install")
        plan = plan_install(probe_platform(), args.mode, reqs, python, cluster=args.cluster)
        if args.plan_only:
            print(json.dumps(plan_as_json(plan), indent=1))
            return 0
        for note in plan.notes:
            print(f"plan: {note}", file=sys.stderr, flush=True)
        emit("progress", stage=f"{STAGE}: creating the environment", step=1, total=plan.steps)
        if not env_python(args.env).is_file():
            venv.EnvBuilder(with_pip=True, clear=False).create(args.env)
        for step, command in enumerate(plan.commands, start=2):
            label = command_label(command)
            emit("progress", stage=f"{STAGE}: {label}", step=step, total=plan.steps)
            run_pip(command, step, plan.steps, label)
        emit("progress", stage=f"{STAGE}: device check", step=plan.steps, total=plan.steps)
        device = check_device(python, args.record)
        if args.record is not None:
            record_setup(args.record, plan)
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        emit(
            "error",
            message=f"engine setup failed: {exc}",
            fix="check the network and the log; or set Engine Python to an existing environment",
        )
        return 1
    print(f"device check: {device.get('summary')}", file=sys.stderr, flush=True)
    emit("done", output=python, device=device, notes=list(plan.notes))
    return 0


def record_setup(record: Path, plan: InstallPlan) -> None:
    """Add what was installed and the plan's notes to the device check's record."""
    data = json.loads(record.read_text(encoding="utf-8"))
    data["setup"] = {k: v for k, v in plan_as_json(plan).items() if k != "commands"}
    temp = record.with_name(f".{record.name}.setup")
    temp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(temp, record)


def plan_as_json(plan: InstallPlan) -> dict[str, object]:
    return {
        "mode": plan.mode,
        "torch_build": plan.torch_build,
        "expected_device": plan.expected_device,
        "commands": [list(c) for c in plan.commands],
        "notes": list(plan.notes),
    }


if __name__ == "__main__":
    raise SystemExit(main())
