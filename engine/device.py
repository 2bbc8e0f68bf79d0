"""``python -m engine device``: which torch this Python has and the device it will use.

Run after *Set Up Engine* (and by the add-on's *Check Engine*) so the user sees, before
any job, whether prompts will run on the GPU: ``torch 2.13.0+cu130 (CUDA 13.0) · cuda:
NVIDIA GeForce RTX 4090``, ``… · mps``, ``… · cpu``, or ``animate only: no torch`` in an
environment set up without the generation extra. The device is the one ``generate
--device auto`` picks (:func:`engine.generate.loading.pick_device`).

Prints one line (``--json``: one JSON object) on stdout; ``--record FILE`` also writes
the JSON there, whole (a temporary sibling renamed into place), for the add-on's
preferences. Imports torch only inside :func:`check_device`, and only if installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

from .progress import JobContext

HELP = "print the torch version and the device generate will use (or 'animate only')"

#: The prompt side's packages besides torch; without them ``generate`` cannot run.
GENERATE_MODULES = ("diffusers", "transformers", "accelerate", "safetensors", "huggingface_hub")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--record", type=Path, help="also write the JSON result to this file (replaced whole)"
    )


def run(args: argparse.Namespace, ctx: JobContext) -> None:
    result = check_device()
    if args.record is not None:
        write_record(args.record, result)
    print(json.dumps(result) if args.json else result["summary"], flush=True)


def check_device() -> dict[str, Any]:
    """The torch version and the device ``generate --device auto`` would use.

    Keys: ``python`` (this interpreter), ``platform``, ``torch`` (version or None),
    ``cuda`` (the CUDA torch was built with, or None), ``device`` (cuda, mps, cpu or
    none), ``device_name``, ``missing`` (generation packages not installed), ``summary``
    (one line for people).
    """
    result: dict[str, Any] = {
        "python": sys.executable,
        "platform": f"{platform.system()} {platform.machine()}",
        "torch": None,
        "cuda": None,
        "device": "none",
        "device_name": "",
        "missing": [m for m in GENERATE_MODULES if importlib.util.find_spec(m) is None],
    }
    if importlib.util.find_spec("torch") is None:
        result["summary"] = "animate only: no torch (Generate World needs a full Set Up Engine)"
        return result
    import torch

    from .generate.loading import pick_device

    device = pick_device("auto")
    result["torch"] = str(torch.__version__)
    result["cuda"] = torch.version.cuda
    result["device"] = device
    if device == "cuda":
        result["device_name"] = torch.cuda.get_device_name(0)
    elif device == "mps":
        result["device_name"] = "Apple GPU (MPS)"
    else:
        result["device_name"] = platform.processor() or platform.machine()
    built = f" (CUDA {torch.version.cuda})" if torch.version.cuda else ""
    summary = f"torch {torch.__version__}{built} · {device}: {result['device_name']}"
    if result["missing"]:
        summary += f" · missing for Generate World: {', '.join(result['missing'])}"
    result["summary"] = summary
    return result


def write_record(path: Path, result: dict[str, Any]) -> None:
    """``result`` as JSON at ``path``, replaced whole (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(result, stream, indent=1)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
