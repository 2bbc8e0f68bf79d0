"""The engine worker's protocol, run for real as the add-on runs it (a subprocess).

stdout carries only JSON events; a ``cancel`` line or SIGTERM stops the job and leaves
no output; bad input is an ``error`` event with exit code 2; the engine imports without
bpy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def start_worker(job: dict, tmp_path: Path) -> subprocess.Popen:
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "worker", "--job", str(job_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "worker.log").open("w"),
        text=True,
        env=env,
        cwd=tmp_path,
    )


def read_events(proc: subprocess.Popen, until: str | None = None) -> list[dict]:
    """Parse stdout lines as JSON (every line must be JSON) until ``until`` or EOF."""
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))  # a non-JSON line fails the test here
        if until and events[-1]["event"] == until:
            break
    return events


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[list[dict], int, str]:
    """Read events to the end with stdin still open (closing it would mean cancel)."""
    events = read_events(proc)
    proc.wait(timeout=timeout)
    proc.stdin.close()
    log = Path(proc.args[-1]).with_name("worker.log").read_text()
    return events, proc.returncode, log


def test_worker_runs_a_subcommand_and_speaks_json_lines(tmp_path, forest_hdri, three_cameras_json):
    out = tmp_path / "views"
    argv = ["--panorama", str(forest_hdri), "--cameras", str(three_cameras_json), "--out", str(out)]
    proc = start_worker({"command": "views", "argv": argv}, tmp_path)
    events, code, err = finish(proc)
    kinds = [e["event"] for e in events]
    assert code == 0, err
    assert kinds[0] == "started" and kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"progress"}
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["step"] == progress[-1]["total"] == 1
    assert events[-1]["output"] == str(out)
    assert sorted(p.name for p in out.iterdir()) == [
        "Front", "Seam", "Zenith", "cameras.json", "manifest.json",
    ]  # fmt: skip


def test_worker_bad_input_is_an_error_event_exit_2_nothing_written(tmp_path, three_cameras_json):
    out = tmp_path / "views"
    missing = tmp_path / "no_such.exr"
    argv = ["--panorama", str(missing), "--cameras", str(three_cameras_json), "--out", str(out)]
    events, code, _ = finish(start_worker({"command": "views", "argv": argv}, tmp_path))
    assert code == 2
    assert events[-1]["event"] == "error"
    assert str(missing) in events[-1]["message"]
    assert events[-1]["exit_code"] == 2
    assert not out.exists()


@pytest.mark.parametrize(
    "job, named",
    [
        ({"command": "worker", "argv": []}, "worker"),
        ({"command": "nonsense", "argv": []}, "nonsense"),
        ({"command": "views", "argv": "--out x"}, "argv"),
    ],
)
def test_worker_refuses_malformed_jobs(tmp_path, job, named):
    events, code, _ = finish(start_worker(job, tmp_path))
    assert code == 2
    assert events[-1]["event"] == "error" and named in events[-1]["message"]


@pytest.fixture(scope="module")
def slow_animate_argv(tmp_path_factory) -> list[str]:
    """An animate job of 96 native-size frames: seconds long, so a cancel lands mid-job."""
    from conftest import bundled_hdri_dir

    return [str(bundled_hdri_dir() / "forest.exr"), "--seconds", "4", "--fps", "24"]


def _require_animate() -> None:
    if not (REPO / "engine" / "animate" / "command.py").is_file():
        pytest.skip("engine/animate/command.py (the animate subcommand) is not in this build")


@pytest.mark.parametrize("how", ["cancel_line", "sigterm"])
def test_cancel_mid_job_leaves_no_output(tmp_path, slow_animate_argv, how):
    _require_animate()
    out = tmp_path / "loop"
    proc = start_worker({"command": "animate", "argv": [*slow_animate_argv, "--out", str(out)]},
                        tmp_path)  # fmt: skip
    events = read_events(proc, until="progress")
    assert events[-1]["event"] == "progress", events
    if how == "cancel_line":
        proc.stdin.write("cancel\n")
        proc.stdin.flush()
    else:
        proc.send_signal(signal.SIGTERM)
    rest, code, err = finish(proc)
    assert code == 130, err
    assert rest[-1]["event"] == "cancelled"
    assert not out.exists()
    assert not list(tmp_path.glob(".loop.partial-*")), "temporary output left behind"


def test_closing_stdin_cancels_the_job(tmp_path, slow_animate_argv):
    """Blender gone (its end of the pipe closed) = cancel: no orphan keeps computing."""
    _require_animate()
    out = tmp_path / "loop"
    proc = start_worker({"command": "animate", "argv": [*slow_animate_argv, "--out", str(out)]},
                        tmp_path)  # fmt: skip
    read_events(proc, until="progress")
    proc.stdin.close()
    start = time.monotonic()
    rest = read_events(proc)
    proc.wait(timeout=30)
    assert proc.returncode == 130 and rest[-1]["event"] == "cancelled"
    assert time.monotonic() - start < 20
    assert not out.exists() and not list(tmp_path.glob(".loop.partial-*"))


FORBID_IMPORTS = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys
    FORBIDDEN = set(sys.argv[1].split(","))

    class Forbid(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in FORBIDDEN:
                raise ImportError(f"forbidden import: {name}")
            return None

    sys.meta_path.insert(0, Forbid())
    """
)


def test_engine_imports_without_bpy():
    """Every engine module imports with bpy forbidden (the engine never asks Blender)."""
    script = FORBID_IMPORTS + textwrap.dedent(
        """
        import engine
        names = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")
                 if not m.name.endswith("__main__")]
        for name in names:
            importlib.import_module(name)
        print(len(names), "bpy" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "bpy"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    count, bpy_loaded = done.stdout.split()
    assert int(count) >= 8 and bpy_loaded == "False"


def test_worker_carries_the_motion_map_and_drift_flags(tmp_path, forest_hdri):
    """The worker parses animate's new flags with the CLI's parser: a drift speed of NaN
    is an error event naming it (exit 2, nothing written)."""
    _require_animate()
    out = tmp_path / "loop"
    argv = [str(forest_hdri), "--out", str(out), "--drift-direction", "45", "--drift-speed", "nan"]
    events, code, _ = finish(start_worker({"command": "animate", "argv": argv}, tmp_path))
    assert code == 2 and events[-1]["event"] == "error"
    assert "--drift-speed" in events[-1]["message"] and "nan" in events[-1]["message"]
    assert not out.exists()
