"""Finding an installed Blender's OCIO config (engine.blender_install) on the layouts
Blender really ships: the release archive (version folder beside the executable), a Linux
distribution (/usr/bin/blender, /usr/share/blender/<version>), a macOS bundle. The trees
are built in a temporary folder with Blender's real config.ocio copied in."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from engine import blender_install


@pytest.fixture(scope="module")
def real_config(blender_ocio_config) -> Path:
    if blender_ocio_config is None:
        pytest.skip("the bpy module (Blender's OCIO config) is not installed")
    return blender_ocio_config


def install_version(root: Path, version: str, real_config: Path) -> Path:
    config = root / version / blender_install.CONFIG_IN_VERSION
    config.parent.mkdir(parents=True)
    shutil.copy(real_config, config)
    return config


def put_executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_the_newest_version_folder_wins(tmp_path, real_config):
    install_version(tmp_path, "4.2", real_config)
    newest = install_version(tmp_path, "5.0", real_config)
    (tmp_path / "5.1").mkdir()  # a version folder without a config is passed over
    (tmp_path / "scripts").mkdir()
    assert blender_install.newest_config(tmp_path) == newest.resolve()
    assert blender_install.newest_config(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("executable", "root"),
    [
        ("blender-5.0.1-linux-x64/blender", "blender-5.0.1-linux-x64"),
        ("usr/bin/blender", "usr/share/blender"),
        ("Blender.app/Contents/MacOS/blender", "Blender.app/Contents/Resources"),
    ],
)
@pytest.mark.skipif(os.name == "nt", reason="PATH lookup of a shell script needs POSIX")
def test_blender_on_path_is_found_in_each_shipped_layout(
    tmp_path, real_config, monkeypatch, executable, root
):
    binary = put_executable(tmp_path / executable)
    config = install_version(tmp_path / root, "5.0", real_config)
    link = tmp_path / "bin" / "blender"  # a symlink on PATH, as distributions and users make
    link.parent.mkdir()
    link.symlink_to(binary)
    monkeypatch.setenv("PATH", str(link.parent))
    monkeypatch.setattr(blender_install, "bpy_module_folder", lambda: None)
    assert blender_install.installed_ocio_config() == config.resolve()


def test_the_bpy_module_of_this_python_comes_first(real_config):
    found = blender_install.installed_ocio_config()
    assert found == real_config.resolve()
    assert blender_install.bpy_module_folder() in found.parents


def test_nothing_found_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(blender_install, "bpy_module_folder", lambda: None)
    monkeypatch.setattr(blender_install, "usual_install_roots", lambda: iter(()))
    assert blender_install.installed_ocio_config() is None
