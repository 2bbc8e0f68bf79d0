"""Every bad input refused, nothing left behind: the table-driven bad-input suite.

For every CLI subcommand and the worker, each case asserts exit 2 (or the worker's
``error`` event), exactly one line on stderr naming the value, no traceback, and the
sandbox folder unchanged — nothing written, no hidden ``.NAME.partial-*`` folder left.
Cases run in-process through :func:`engine.cli.main` (the same parser the worker uses);
only signals, crashes and resource limits need a real process.

What these tests prove is behaviour, with real files: real images and folders, a real
read-only mount and a real full tmpfs where the machine allows mounting (root), and a
real per-process file-size limit (RLIMIT_FSIZE) everywhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import camera_dict
from test_addon_blender import blender_home, built_zip  # noqa: F401 (fixtures)

from engine import checks, preflight
from engine.cli import main
from engine.contract import OWNER_LOCK, atomic_output_dir, sweep_stale_partials
from engine.media import write_image

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- sandbox


def snapshot(folder: Path) -> set[str]:
    """Every path under ``folder`` (hidden ones included), relative, as bytes-safe text."""
    return {os.fsdecode(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> dict[str, Path]:
    """A small world of valid inputs that the bad cases bend one value at a time."""
    root = tmp_path_factory.mktemp("bad_input")
    rng = np.random.default_rng(7)
    pano = root / "pano.png"
    write_image(pano, (rng.random((32, 64, 3)) * 255).astype(np.uint8))
    loop = root / "loop"
    assert main(["animate", str(pano), "--out", str(loop), "--seconds", "0.5", "--fps", "6"]) == 0
    cams = root / "cams.json"
    cams.write_text(json.dumps([camera_dict("Front", resolution_x=16, resolution_y=12)]))
    a_file = root / "a_file.txt"
    a_file.write_text("not a folder")
    odd = root / os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not UTF-8
    odd.write_bytes(pano.read_bytes())
    odd_frames = root / "odd_frames"
    odd_frames.mkdir()
    for n in range(3):
        name = os.fsdecode(b"frame_\xff%06d.png" % n)
        (odd_frames / name).write_bytes(pano.read_bytes())
    return {"root": root, "pano": pano, "loop": loop, "cams": cams, "file": a_file,
            "odd": odd, "odd_frames": odd_frames}  # fmt: skip


def write_cameras(sandbox: dict[str, Path], name: str, **overrides) -> Path:
    path = sandbox["root"] / f"{name}.json"
    entry = camera_dict("Cam", resolution_x=16, resolution_y=12)
    entry.update(overrides)
    path.write_text(json.dumps([entry]))  # Python's json writes NaN / Infinity as given
    return path


def refuse(sandbox, capsys, argv: list[str], expected: str) -> str:
    """Run ``argv`` in-process; assert exit 2, one line naming ``expected``, nothing left."""
    before = snapshot(sandbox["root"])
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, err)
    assert err.startswith("error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    assert expected in err, (expected, err)
    assert snapshot(sandbox["root"]) == before, f"{argv} left files behind"
    return err


def fill(sandbox: dict[str, Path], argv: list[str]) -> list[str]:
    """``{pano}``, ``{loop}``, ``{cams}``, ``{file}``, ``{odd}``, ``{out}``… in argv."""
    names = {k: str(v) for k, v in sandbox.items()}
    names["out"] = str(sandbox["root"] / "out")
    return [a.format(**names) for a in argv]


# ------------------------------------------------------------ numbers (one layer for all)

NUMBER_CASES = {
    # NaN, infinity and absurd magnitudes, wherever a number is typed
    "animate fps inf": (["animate", "{pano}", "--out", "{out}", "--fps", "inf"], "--fps"),
    "animate fps 300": (["animate", "{pano}", "--out", "{out}", "--fps", "300"], "'300'"),
    "animate seconds nan": (["animate", "{pano}", "--out", "{out}", "--seconds", "NaN"], "NaN"),
    "animate seconds 1e308": (["animate", "{pano}", "--out", "{out}", "--seconds", "1e308"],
                              "'1e308'"),
    "animate strength -inf": (["animate", "{pano}", "--out", "{out}", "--strength=-inf"],
                              "got '-inf'"),
    "animate seed 2**32": (["animate", "{pano}", "--out", "{out}", "--seed", "4294967296"],
                           "'4294967296'"),
    "animate frames > 6 digits": (["animate", "{pano}", "--out", "{out}", "--seconds", "50000",
                                   "--fps", "30"], "1,500,000 frames"),
    "generate seed -3": (["generate", "--prompt", "p", "--model", "m", "--out", "{out}",
                          "--seed", "-3"], "--seed"),
    "generate guidance nan": (["generate", "--prompt", "p", "--model", "m", "--out", "{out}",
                               "--guidance", "nan"], "--guidance"),
    "generate fps 0.5": (["generate", "--prompt", "p", "--model", "m", "--out", "{out}",
                          "--fps", "0.5"], "'0.5'"),
    "multicam fps -inf": (["multicam", "--panorama", "{loop}", "--cameras", "{cams}", "--out",
                           "{out}", "--fps=-inf"], "got '-inf'"),
    "multicam frame range huge": (["multicam", "--panorama", "{loop}", "--cameras", "{cams}",
                                   "--out", "{out}", "--frame-range", "1", "99999999"],
                                  "'99999999'"),
    "export yaw -1e25": (["export", "{loop}", "--out", "{out}", "--yaw=-1e25"], "'-1e25'"),
    "export yaw infinity": (["export", "{loop}", "--out", "{out}", "--yaw", "Infinity"],
                            "--yaw"),
    "export viewpoint nan z": (["export", "{loop}", "--out", "{out}", "--webxr", "--viewpoint",
                                "1", "2", "nan"], "--viewpoint"),
    "export viewpoint 1e9": (["export", "{loop}", "--out", "{out}", "--webxr", "--viewpoint",
                              "1e9", "0", "0"], "'1e9'"),
    "export fps nan": (["export", "{loop}", "--out", "{out}", "--fps", "nan"], "--fps"),
    "export crf 80": (["export", "{loop}", "--out", "{out}", "--crf", "80"], "'80'"),
    "motion fps inf": (["motion", "{pano}", "--out", "{root}/m.npz", "--fps", "inf"], "'inf'"),
    "export face size 2**40": (["export", "{loop}", "--out", "{out}", "--cubemap",
                                "--face-size", "1099511627776"], "--face-size"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(NUMBER_CASES))
def test_numbers_are_finite_and_within_the_shared_limits(sandbox, capsys, case):
    argv, expected = NUMBER_CASES[case]
    refuse(sandbox, capsys, fill(sandbox, argv), expected)


def test_every_number_argument_of_every_subcommand_is_guarded():
    """No subcommand argument takes a bare float/int/Path: all go through engine.checks."""
    from engine.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.type not in (float, int, Path), (name, action.dest)


def test_one_set_of_limits_for_fps_and_seed():
    """animate, multicam, export and generate share the fps range; seeds likewise."""
    assert checks.LIMITS_BY_DEST["fps"] is checks.FPS
    assert (checks.FPS.low, checks.FPS.high) == (1, 240)
    assert (checks.SEED.low, checks.SEED.high) == (0, 2**31 - 1)


# ----------------------------------------------------------------------------- paths

PATH_CASES = {
    "input not UTF-8": (["animate", "{odd}", "--out", "{out}"], "caf\\xe9.png"),
    "output not UTF-8": (["animate", "{pano}", "--out", "{root}/" + os.fsdecode(b"\xfeout")],
                         "\\xfeout"),
    "cameras not UTF-8": (["views", "--panorama", "{pano}", "--cameras", "{odd}", "--out",
                           "{out}"], "caf\\xe9"),
    "frames not UTF-8": (["views", "--panorama", "{odd_frames}", "--cameras", "{cams}",
                          "--out", "{out}"], "frame_\\xff000000.png"),
    "export frames not UTF-8": (["export", "{odd_frames}", "--out", "{out}", "--fps", "6"],
                                "not valid UTF-8"),
    "motion clip not UTF-8": (["motion", "{odd}", "--out", "{root}/m.npz"], "caf\\xe9.png"),
    "output under a file": (["animate", "{pano}", "--out", "{file}/loop"], "is a file"),
    "export output under a file": (["export", "{loop}", "--out", "{file}/sub/vr"],
                                   "is a file"),
    "views output is a file": (["views", "--panorama", "{pano}", "--cameras", "{cams}",
                                "--out", "{file}"], "already exists"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(PATH_CASES))
def test_paths_opencv_cannot_take_and_unwritable_outputs(sandbox, capsys, case):
    argv, expected = PATH_CASES[case]
    refuse(sandbox, capsys, fill(sandbox, argv), expected)


def test_a_path_that_is_not_utf8_never_reaches_opencv_in_a_real_process(sandbox, tmp_path):
    """Before: SIGSEGV inside OpenCV. Now: exit 2, one line, nothing written."""
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "engine", "animate", os.fsencode(sandbox["odd"]), "--out", out],
        capture_output=True,
        env=env,
    )
    err = result.stderr.decode("utf-8", "replace").strip()
    assert result.returncode == 2, err
    assert "\n" not in err and "caf\\xe9.png" in err
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- cameras.json

CAMERA_CASES = {
    "lens 1e-250": ({"lens": 1e-250}, "lens must be a number from 0.01"),
    "sensor infinite": ({"sensor_width": float("inf")}, "sensor_width"),
    "shift 1e40": ({"shift_y": 1e40}, "shift_y"),
    "pixel aspect nan": ({"pixel_aspect_x": float("nan")}, "pixel_aspect_x"),
    "position 1e12": ({"matrix_world": [[1, 0, 0, 1e12], [0, 1, 0, 0], [0, 0, 1, 0],
                                        [0, 0, 0, 1]]}, "beyond"),
    "resolution 2**20": ({"resolution_x": 2**20}, "resolution_x"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CAMERA_CASES))
def test_camera_values_are_finite_and_plausible(sandbox, capsys, case):
    overrides, expected = CAMERA_CASES[case]
    cams = write_cameras(sandbox, case.replace(" ", "_"), **overrides)
    try:
        for command in (["views", "--panorama", "{pano}"], ["multicam", "--panorama", "{loop}"]):
            argv = fill(sandbox, [*command, "--cameras", str(cams), "--out", "{out}"])
            refuse(sandbox, capsys, argv, expected)
    finally:
        cams.unlink()


# ----------------------------------------------------------------------------- preflight


def test_a_camera_too_big_for_memory_is_refused_with_the_estimate(sandbox, capsys):
    """65,536 × 65,536 pixels: about 250 GB of maps, more than any test machine has."""
    cams = write_cameras(sandbox, "huge", resolution_x=65_536, resolution_y=65_536)
    try:
        argv = fill(sandbox, ["views", "--panorama", "{pano}", "--cameras", str(cams),
                              "--out", "{out}"])  # fmt: skip
        err = refuse(sandbox, capsys, argv, "of memory")
        assert "4,294,967,296 pixels" in err and "GB is available" in err
        assert "fix: lower the cameras' resolution" in err
    finally:
        cams.unlink()


def test_a_cube_face_too_big_for_memory_is_refused_with_the_estimate(sandbox, capsys):
    argv = fill(sandbox, ["export", "{loop}", "--out", "{out}", "--cubemap",
                          "--face-size", "400000"])  # fmt: skip
    err = refuse(sandbox, capsys, argv, "cube faces of 400,000x400,000 pixels")
    assert "TB of memory" in err and "fix: lower --face-size" in err


def test_a_panorama_too_big_for_memory_is_refused_before_decoding(sandbox, capsys, monkeypatch):
    """The header says 16384×8192; with 4 GB available animate needs more: refused
    before a pixel is decoded (the file is a real PNG with that header)."""
    import cv2

    big = sandbox["root"] / "big.png"
    # A real 16K PNG of one colour compresses to a few hundred kB.
    ok, data = cv2.imencode(".png", np.zeros((8192, 16384, 3), np.uint8))
    big.write_bytes(data.tobytes())
    monkeypatch.setattr(preflight, "available_memory", lambda: 4 * 10**9)
    try:
        argv = fill(sandbox, ["animate", str(big), "--out", "{out}"])
        err = refuse(sandbox, capsys, argv, "animating a 16384x8192 panorama needs about")
        assert "4.0 GB is available" in err and "fix: use a smaller panorama" in err
    finally:
        big.unlink()


def test_a_loop_too_long_for_the_disk_is_refused_with_the_numbers(sandbox, capsys, monkeypatch):
    """One hour at 25 fps with 50 MB free: refused before anything is written, naming the
    frame count, the size per frame and what to change."""
    monkeypatch.setattr(preflight, "free_disk", lambda folder: 50 * 10**6 + preflight.DISK_RESERVE)
    argv = fill(sandbox, ["animate", "{pano}", "--out", "{out}", "--seconds", "3600",
                          "--fps", "25"])  # fmt: skip
    err = refuse(sandbox, capsys, argv, "90,000 frames of 64x32")
    assert "MB is free" in err and "shorten --seconds or lower --fps" in err


def test_a_job_that_fits_is_not_refused(sandbox, capsys, tmp_path):
    """The estimates are close to real use: a normal job on this machine runs."""
    assert main(["animate", str(sandbox["pano"]), "--out", str(tmp_path / "ok"), "--seconds",
                 "0.5", "--fps", "6"]) == 0  # fmt: skip
    assert len(list((tmp_path / "ok" / "frames").iterdir())) == 3


# ----------------------------------------------------------------------------- the worker


def run_worker_job(tmp_path: Path, command: str, argv: list[str]) -> tuple[int, list[dict], str]:
    """Run ``python -m engine worker`` on one job; exit code, events, stderr."""
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"command": command, "argv": argv}))
    result = subprocess.run(
        [sys.executable, "-m", "engine", "worker", "--job", str(job)],
        capture_output=True,
        text=True,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    events = [json.loads(line) for line in result.stdout.splitlines()]
    return result.returncode, events, result.stderr


WORKER_CASES = {
    "--help in argv": ("animate", ["{pano}", "--out", "{out}", "--help"], "'--help'"),
    "-h in argv": ("export", ["-h"], "'-h'"),
    "fps nan": ("multicam", ["--panorama", "{loop}", "--cameras", "{cams}", "--out", "{out}",
                             "--fps", "nan"], "--fps"),
    "NUL in a path": ("animate", ["{pano}", "--out", "{root}/a\x00b"], "NUL byte"),
    "lone surrogate path": ("animate", ["{root}/\udcff.png", "--out", "{out}"], "UTF-8"),
    "output under a file": ("export", ["{loop}", "--out", "{file}/vr"], "is a file"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(WORKER_CASES))
def test_the_worker_ends_every_bad_job_with_one_error_event(sandbox, tmp_path, case):
    """Never exit 0 without a final event: argparse's --help exit included."""
    command, argv, expected = WORKER_CASES[case]
    before = snapshot(sandbox["root"])
    code, events, stderr = run_worker_job(tmp_path, command, fill(sandbox, argv))
    assert code == 2, (events, stderr[-2000:])
    assert events[-1]["event"] == "error", events
    assert expected in events[-1]["message"], events[-1]
    assert "\n" not in events[-1]["message"] and "bug in PanoLoop" not in events[-1]["fix"]
    assert "Traceback" not in stderr
    assert snapshot(sandbox["root"]) == before


# ----------------------------------------------------------------------------- signals


@pytest.fixture(scope="module")
def slow_pano(tmp_path_factory) -> Path:
    """A panorama big enough that animate's frames take a few seconds in all."""
    path = tmp_path_factory.mktemp("slow") / "slow.png"
    rng = np.random.default_rng(3)
    write_image(path, (rng.random((128, 256, 3)) * 255).astype(np.uint8))
    return path


def animate_argv(source: Path, out: Path) -> list[str]:
    return [str(source), "--out", str(out), "--seconds", "4", "--fps", "24"]


def partials(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if ".partial-" in p.name)


def frames_written(parent: Path) -> int:
    return max((len(list((t / "frames").glob("frame_*"))) for t in partials(parent)), default=0)


@pytest.fixture(scope="module")
def signalled(slow_pano, tmp_path_factory) -> dict[str, dict]:
    """Three animate jobs at once (their start-up overlaps): a CLI job sent SIGTERM, a CLI
    job and a worker job sent SIGKILL, each once its temporary folder holds 3 frames."""
    root = tmp_path_factory.mktemp("signals")
    jobs: dict[str, dict] = {}
    for name, sig in (("term", signal.SIGTERM), ("kill", signal.SIGKILL),
                      ("worker", signal.SIGKILL)):  # fmt: skip
        parent = root / name
        parent.mkdir()
        argv = animate_argv(slow_pano, parent / "loop")
        if name == "worker":
            job = root / "job.json"
            job.write_text(json.dumps({"command": "animate", "argv": argv}))
            argv = ["worker", "--job", str(job)]
        else:
            argv = ["animate", *argv]
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", *argv],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        jobs[name] = {"parent": parent, "proc": proc, "signal": sig}
    deadline = time.monotonic() + 240
    waiting = set(jobs)
    while waiting and time.monotonic() < deadline:
        for name in sorted(waiting):
            job = jobs[name]
            assert job["proc"].poll() is None, (name, job["proc"].communicate())
            if frames_written(job["parent"]) >= 3:
                job["proc"].send_signal(job["signal"])
                waiting.discard(name)
        time.sleep(0.05)
    assert not waiting, f"{waiting} wrote no frames in 240 s"
    for job in jobs.values():
        _out, job["stderr"] = job["proc"].communicate(timeout=120)
        job["code"] = job["proc"].returncode
        job["left"] = sorted(p.name for p in job["parent"].iterdir())
    return jobs


def test_sigterm_mid_animate_cleans_up_like_ctrl_c(signalled):
    job = signalled["term"]
    assert job["code"] == 128 + signal.SIGTERM, job["stderr"]
    last = job["stderr"].strip().splitlines()[-1]
    assert last == "cancelled: stopped by SIGTERM; no output was written", job["stderr"]
    assert "Traceback" not in job["stderr"]
    assert job["left"] == []


@pytest.mark.parametrize("name", ["kill", "worker"])
def test_sigkill_leaves_a_folder_the_next_run_sweeps(signalled, sandbox, name):
    """A killed CLI job or worker cannot clean up; the next job into the same folder does."""
    job = signalled[name]
    assert job["code"] == -signal.SIGKILL
    assert len(job["left"]) == 1 and ".loop.partial-" in job["left"][0]  # what SIGKILL leaves
    nxt = job["parent"] / "next"
    assert main(["animate", str(sandbox["pano"]), "--out", str(nxt), "--seconds", "0.5",
                 "--fps", "6"]) == 0  # fmt: skip
    assert sorted(p.name for p in job["parent"].iterdir()) == ["next"]  # … gone after the next


def test_a_live_jobs_folder_is_never_swept_whatever_its_pid(tmp_path):
    """The owner lock decides, not the pid: a live job's folder stays; a folder whose lock
    nobody holds goes even if its pid is alive (reused); with no lock, a dead pid goes."""
    with atomic_output_dir(tmp_path / "live") as live:
        reused = tmp_path / f".old.partial-{os.getppid()}-abc"  # a running pid, reused
        reused.mkdir()
        (reused / OWNER_LOCK).write_text(f"{os.getppid()}\n")
        finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True)  # fmt: skip
        dead_pid = int(finished.stdout)
        unlocked_dead = tmp_path / f".gone.partial-{dead_pid}-xyz"
        unlocked_dead.mkdir()
        unlocked_live = tmp_path / f".starting.partial-{os.getppid()}-def"
        unlocked_live.mkdir()
        swept = sweep_stale_partials(tmp_path)
        assert live.is_dir() and (live / OWNER_LOCK).is_file()
        assert sorted(p.name for p in swept) == sorted([reused.name, unlocked_dead.name])
        assert unlocked_live.is_dir()
    assert (tmp_path / "live").is_dir() and not (tmp_path / "live" / OWNER_LOCK).exists()


# ----------------------------------------------------------------------------- full disks


def limit_file_size(limit: int):
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_file_size_limit_mid_job_is_one_line_and_leaves_nothing(slow_pano, tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse writes past 30 kB (EFBIG), as a full disk
    would refuse them: the frames and motion.npz writes fail for real."""
    out_parent = tmp_path / "outputs"
    out_parent.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "engine", "animate", str(slow_pano), "--out",
         str(out_parent / "loop"), "--seconds", "1", "--fps", "8"],
        cwd=REPO, capture_output=True, text=True, preexec_fn=limit_file_size(30_000),
        env=dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba")),
    )  # fmt: skip
    err = result.stderr.strip()
    assert result.returncode == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"error: cannot write {out_parent / 'loop'}"), err
    assert "file size limit reached" in err
    assert list(out_parent.iterdir()) == []


def mount_tmpfs(folder: Path, options: str) -> bool:
    """Mount a tmpfs at ``folder`` (root only); False where the machine does not allow it."""
    folder.mkdir()
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True)  # fmt: skip
    return done.returncode == 0


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MB tmpfs (a disk that really fills up), unmounted afterwards."""
    disk = tmp_path / "tiny"
    if not mount_tmpfs(disk, "size=2m"):
        pytest.skip("mounting a tmpfs needs root; the RLIMIT_FSIZE test covers full writes")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_disk_full_mid_job_says_no_space_and_leaves_nothing(
    slow_pano, tiny_disk, capsys, monkeypatch
):
    """The preflight is told the disk is roomy (as when another program fills it while
    the job runs); the real ENOSPC then arrives mid-job, and is one line."""
    monkeypatch.setattr(preflight, "free_disk", lambda folder: 10**12)
    out = tiny_disk / "loop"
    code = main(["animate", str(slow_pano), "--out", str(out), "--seconds", "8", "--fps", "24"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith(f"error: cannot write {out}") and "\n" not in err, err
    assert f"no space left on {tiny_disk}" in err
    assert list(tiny_disk.iterdir()) == []


def test_a_full_disk_refuses_the_job_before_it_starts(slow_pano, tiny_disk, capsys):
    err = refuse_in(tiny_disk, capsys, ["animate", str(slow_pano), "--out",
                                        str(tiny_disk / "loop"), "--seconds", "60"])  # fmt: skip
    assert "1,440 frames of 256x128" in err and "is free" in err


def test_a_read_only_disk_is_named(slow_pano, tmp_path, capsys):
    disk = tmp_path / "ro"
    if not mount_tmpfs(disk, "ro,size=1m"):
        pytest.skip("mounting a read-only tmpfs needs root; output-under-a-file covers it")
    try:
        err = refuse_in(disk, capsys, ["animate", str(slow_pano), "--out", str(disk / "x")])
        assert "mounted read-only" in err
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def refuse_in(folder: Path, capsys, argv: list[str]) -> str:
    """Like :func:`refuse`, for a folder outside the sandbox."""
    before = snapshot(folder)
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err, err
    assert snapshot(folder) == before
    return err


# ----------------------------------------------------------------------------- the add-on


def test_addon_operators_report_bad_input_as_one_error(
    built_zip,  # noqa: F811 (the fixture imported above)
    blender_home,  # noqa: F811
    tmp_path,
    sandbox,
):
    """Through bpy.ops in the real bpy module: the shared limits on the scene's properties,
    an output folder that is a file, an input the engine refuses (nothing left in the
    outputs), and an untrusted manifest in Apply Loop to World — each one ERROR report."""
    (tmp_path / "outputs").mkdir()
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    bad_loop = tmp_path / "bad_loop"
    bad_loop.mkdir()
    (bad_loop / "manifest.json").write_text(json.dumps({"fps": "fast", "frames_dir": 7}))
    results = tmp_path / "seen.json"
    config = {"zip": str(built_zip), "tmp": str(tmp_path), "results": str(results),
              "a_file": str(sandbox["file"]), "pano": str(sandbox["pano"]),
              "not_an_image": str(broken), "bad_manifest": str(bad_loop)}  # fmt: skip
    env = dict(os.environ, HOME=str(blender_home), PYTHONPATH="")
    env.pop("NUMBA_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("addon_bad_input_scenario.py")),
         json.dumps(config)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    seen = json.loads(results.read_text())
    assert seen["limits"]["fps"] == [checks.FPS.low, checks.FPS.high]
    assert seen["limits"]["seed"] == [checks.SEED.low, checks.SEED.high]
    assert seen["limits"]["strength"] == [checks.STRENGTH.low, checks.STRENGTH.high]
    for case in ("output_is_a_file", "engine_refuses", "bad_manifest"):
        assert seen[case]["result"] == ["CANCELLED"], (case, seen[case])
        error = seen[case]["error"].strip()
        assert error.startswith("Error: ") and "\n" not in error, error
        assert "Traceback" not in error and "bug in PanoLoop" not in error, error
    assert str(sandbox["file"]) in seen["output_is_a_file"]["error"]
    assert "is a file" in seen["output_is_a_file"]["error"]
    assert "broken.png" in seen["engine_refuses"]["error"]
    assert seen["engine_refuses"]["outputs"] == []
    assert 'fps is "fast"' in seen["bad_manifest"]["error"]


def test_a_full_disk_under_ffmpeg_is_named_as_such(tiny_disk):
    """ffmpeg writes the MP4 itself; its broken pipe is put down to the full disk."""
    import errno

    from engine.errors import user_error
    from engine.media import encode_mp4

    rng = np.random.default_rng(5)
    noise = [(rng.random((256, 512, 3)) * 255).astype(np.uint8) for _ in range(48)]
    with pytest.raises(OSError) as info:
        encode_mp4(noise, tiny_disk / "preview.mp4", 24, crf=0, preset="ultrafast")
    assert info.value.errno == errno.ENOSPC
    assert f"no space left on {tiny_disk}" in str(user_error(info.value))


# ----------------------------------------------------------------- manifests and names

MANIFEST_CASES = {
    "manifest is a list": ([1, 2], "list"),
    "frames_dir a number": ({"frames_dir": 12, "fps": 6}, "frames_dir"),
    "frames_dir escapes": ({"frames_dir": "../../etc", "fps": 6}, "frames_dir"),
    "fps a word": ({"frames_dir": "frames", "fps": "brisk"}, "brisk"),
    "fps NaN": ({"frames_dir": "frames", "fps": float("nan")}, "fps"),
    "frames a string": ({"frames_dir": "frames", "fps": 6, "frames": "three"}, "frames"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_manifests_are_untrusted_input(sandbox, capsys, case):
    """A loop folder whose manifest.json lies: views, multicam and export all refuse it."""
    import shutil

    manifest, expected = MANIFEST_CASES[case]
    folder = sandbox["root"] / f"lying_{case.replace(' ', '_')}"
    shutil.copytree(sandbox["loop"], folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    try:
        for argv in (
            ["views", "--panorama", str(folder), "--cameras", "{cams}", "--out", "{out}"],
            ["multicam", "--panorama", str(folder), "--cameras", "{cams}", "--out", "{out}"],
            ["export", str(folder), "--out", "{out}"],
        ):
            refuse(sandbox, capsys, fill(sandbox, argv), expected)
    finally:
        shutil.rmtree(folder)


def test_hidden_output_names_are_refused(sandbox, capsys):
    refuse(sandbox, capsys, fill(sandbox, ["export", "{loop}", "--out", "{root}/.vr"]), ".vr")
    refuse(sandbox, capsys, fill(sandbox, ["animate", "{pano}", "--out", "{root}/.."]), "..")
