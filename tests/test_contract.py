"""The output contract (``engine/contract.py``): safe names, manifests as untrusted input,
the atomic output folder. Behaviour tests on real files; no Blender needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import contract
from engine.contract import BadInput

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- safe names


def test_names_that_clean_to_the_same_form_never_share_a_file_name() -> None:
    names = ["a b", "a_b", "a:b", "A_B", "manifest.json", "cameras.json", "x" * 300,
             "x" * 299 + "y", "nul\x00byte", "../x", ".", "..", "", "con"]  # fmt: skip
    safe = contract.safe_names(names)
    folded = [v.casefold() for v in safe.values()]
    assert len(set(folded)) == len(names), safe
    assert safe["a_b"] != safe["A_B"]  # case-insensitive file systems see one name
    assert contract.safe_names(["a b", "a_b", "a:b"])["a_b"] == "a_b"  # safe names keep
    for name, value in safe.items():
        assert value and not value.startswith((".", "-")), (name, value)
        assert len(value) <= contract.MAX_NAME_CHARS
        assert set(value) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
        )
        assert value.casefold() not in contract.RESERVED_NAMES, (name, value)


def test_safe_names_depend_on_the_set_not_the_order() -> None:
    names = ["a b", "a_b", "a:b", "Front", "front"]
    assert contract.safe_names(names) == contract.safe_names(list(reversed(names)))


def test_a_name_given_twice_is_refused_naming_it() -> None:
    with pytest.raises(BadInput, match="'cam' appears twice"):
        contract.safe_names(["cam", "cam"])


def test_hidden_and_parent_names_become_plain_names() -> None:
    assert contract.safe_name("../x") == "x"
    assert not contract.safe_name(".").startswith(".")
    assert not contract.safe_name("--name").startswith("-")


# --------------------------------------------------------------------------- manifests


def _manifest(tmp_path: Path, data: object) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / contract.MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "must hold a JSON object, not a list"),
        ({"frames_dir": 3}, "frames_dir is 3 (int)"),
        ({"frames_dir": "../../etc"}, 'frames_dir is "../../etc"'),
        ({"fps": "fast"}, 'fps is "fast" (str); it must be a number from 1 to 240 fps'),
        ({"fps": -24}, "fps is -24"),
        ({"frames": True}, "frames is true (bool)"),
        ({"width": 10.5}, "width is 10.5 (float)"),
        ({"loop": "yes"}, 'loop is "yes" (str)'),
        ({"cameras": [{"name": "a", "folder": ".."}]}, "cameras[0].folder is '..'"),
        ({"frame_range": [1]}, "frame_range is [1]"),
    ],
)
def test_a_manifest_of_wrong_types_is_one_line_naming_field_and_value(
    tmp_path: Path, data: object, message: str
) -> None:
    folder = _manifest(tmp_path, data)
    with pytest.raises(BadInput) as caught:
        contract.read_manifest(folder)
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_a_valid_panorama_manifest_reads_back(tmp_path: Path) -> None:
    manifest = contract.panorama_manifest(width=8, height=4, frames=2, fps=24.0, loop=True)
    folder = tmp_path / "pano"
    folder.mkdir()
    contract.write_manifest(folder, manifest)
    back = contract.read_manifest(folder, kind=contract.KIND_PANORAMA)
    assert back["orientation"] == contract.ORIENTATION and len(back["orientation"]) == 5
    assert back["yaw_degrees"] == 0.0
    with pytest.raises(BadInput, match="not 'multicam'"):
        contract.read_manifest(folder, kind=contract.KIND_MULTICAM)


def test_a_manifest_with_nan_is_never_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        contract.write_manifest(tmp_path, {"fps": float("nan")})


# --------------------------------------------------------------------------- outputs


def test_output_checks_refuse_existing_hidden_and_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "file").write_text("x")
    for path, message in (
        (tmp_path / "taken", "already exists"),
        (tmp_path / ".hidden", "hidden name"),
        (tmp_path / "file" / "out", "is a file, not a folder"),
        (tmp_path / "missing" / "out", "does not exist"),
    ):
        with pytest.raises(BadInput, match=message):
            contract.check_output_free(path)


def test_the_atomic_folder_appears_whole_with_the_users_umask(tmp_path: Path) -> None:
    """Run in a child with umask 022: the folder must be 0755, not mkdtemp's 0700."""
    script = (
        "import os, sys; from pathlib import Path; from engine import contract\n"
        "os.umask(0o022)\n"
        "with contract.atomic_output_dir(Path(sys.argv[1])) as tmp:\n"
        "    (tmp / 'a.txt').write_text('x')\n"
    )
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-c", script, str(out)], check=True, cwd=REPO)
    assert (out / "a.txt").read_text() == "x"
    assert os.stat(out).st_mode & 0o777 == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_folder_made_at_the_output_path_meanwhile_is_never_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(contract.PanoLoopError, match="appeared while the job ran"):
        with contract.atomic_output_dir(out) as tmp:
            (tmp / "ours.txt").write_text("ours")
            out.mkdir()  # empty: a plain rename(2) would silently replace it
    assert out.is_dir() and list(out.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_block_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with contract.atomic_output_dir(tmp_path / "out") as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_frame_range_must_span_the_loop() -> None:
    contract.check_frame_range(1, 4, 4)
    with pytest.raises(BadInput, match="frame range 1-10 is 10 frames but the loop has 4") as e:
        contract.check_frame_range(1, 10, 4)
    assert e.value.fix == "set the scene's frame range to 1-4"
    with pytest.raises(BadInput, match="is empty"):
        contract.check_frame_range(5, 4, None)


def test_the_contract_imports_only_the_standard_library() -> None:
    code = (
        "import sys; before = set(sys.modules); import engine.contract\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(sorted(new - set(sys.stdlib_module_names) - {'engine'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
