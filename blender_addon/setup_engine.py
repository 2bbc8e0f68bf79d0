"""Create PanoLoop's engine environment: ``python setup_engine.py --env DIR --pyproject FILE``.

Run by the add-on (in Blender's own Python, as a subprocess through the runner) when
the user clicks *Set Up Engine*, and only when Blender allows online access. It makes a
virtual environment and pip-installs the engine's pinned requirements, read from the
``[project] dependencies`` of the extension's ``pyproject.toml`` so there is one list.
Speaks the worker's protocol: JSON lines on stdout, pip's own output on stderr (the log).
Standard library only; no bpy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

STAGE = "set up engine"
STEPS = 3


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def requirements(pyproject: Path) -> list[str]:
    """The engine's pinned dependencies from ``pyproject.toml``."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    deps = project.get("dependencies", [])
    if not deps:
        raise ValueError(f"{pyproject} lists no [project] dependencies")
    return list(deps)


def env_python(env_dir: Path) -> Path:
    if sys.platform == "win32":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", required=True, type=Path)
    parser.add_argument("--pyproject", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        deps = requirements(args.pyproject)
        emit("progress", stage=STAGE, step=1, total=STEPS)
        if not env_python(args.env).is_file():
            venv.EnvBuilder(with_pip=True, clear=False).create(args.env)
        python = str(env_python(args.env))
        emit("progress", stage=STAGE, step=2, total=STEPS)
        subprocess.run(
            [python, "-m", "pip", "install", "--upgrade", *deps], check=True, stdout=sys.stderr
        )
        emit("progress", stage=STAGE, step=3, total=STEPS)
        subprocess.run([python, "-c", "import torch, diffusers, cv2"], check=True)
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        emit(
            "error",
            message=f"engine setup failed: {exc}",
            fix="check the network and the log; or set Engine Python to an existing environment",
        )
        return 1
    emit("done", output=python)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
