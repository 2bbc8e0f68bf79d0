"""``python -m engine serve``: a WebXR package over HTTPS on 127.0.0.1 (behaviour: a real
server process, a real TLS handshake with a certificate made on the spot)."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from engine.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def package(tmp_path: Path) -> Path:
    """A WebXR package as ``engine export --webxr`` writes it (one 2-frame tiny loop)."""
    import numpy as np

    from engine.media import frame_path, panorama_manifest, write_image, write_manifest

    loop = tmp_path / "loop"
    (loop / "frames").mkdir(parents=True)
    for t in range(2):
        write_image(
            frame_path(loop / "frames", t, np.uint8), np.full((32, 64, 3), 40 * t, np.uint8)
        )
    write_manifest(loop, panorama_manifest(width=64, height=32, frames=2, fps=8, loop=True))
    assert main(["export", str(loop), "--out", str(tmp_path / "vr"), "--webxr"]) == 0
    return tmp_path / "vr"


def test_serve_answers_https_on_localhost_with_the_viewer(package: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", str(package), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("https://localhost:"), url + proc.stderr.read()
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # self-signed, made on the spot
        with urllib.request.urlopen(url, context=context, timeout=30) as response:
            page = response.read().decode("utf-8")
            assert response.status == 200
        assert "PanoLoop 360°" in page and "VRButton" in page
        # The certificate names localhost (what the headset's browser checks).
        pem = ssl.get_server_certificate(("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))))
        assert "BEGIN CERTIFICATE" in pem
        # Plain HTTP on the same port is not served.
        with pytest.raises(OSError):
            urllib.request.urlopen(url.replace("https", "http"), timeout=10).read()
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        proc.wait(timeout=30)
    assert "stopped" in proc.stdout.read()


def test_serve_refuses_a_folder_without_a_viewer(tmp_path: Path, capsys) -> None:
    assert main(["serve", str(tmp_path)]) == 2
    assert "holds no WebXR package" in capsys.readouterr().err


def test_the_worker_serves_until_cancel_and_shows_the_url(package: Path, tmp_path: Path) -> None:
    """What *Serve to Headset* runs: the worker reports the URL as its stage, serves, and a
    ``cancel`` line stops it with a ``cancelled`` event."""
    import json

    job = tmp_path / "job.json"
    job.write_text(json.dumps({"command": "serve", "argv": [str(package), "--port", "0"]}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "worker", "--job", str(job)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "progress":
            break
    assert events[-1]["stage"].startswith("serving https://localhost:"), events
    proc.stdin.write("cancel\n")
    proc.stdin.flush()
    final = [json.loads(line) for line in proc.stdout][-1]
    assert final["event"] == "cancelled" and proc.wait(timeout=30) == 130
