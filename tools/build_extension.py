"""Build the PanoLoop extension zip with Blender's own extension tool.

    python tools/build_extension.py [--out dist]

Runs ``blender_ext.py validate`` and ``build`` from the bpy module's bundled scripts
(plain Python, no Blender binary needed) on the repository root, which is the
extension root. The manifest's ``[build]`` excludes tests, benchmarks, tools, docs,
CI and environments. Prints the zip's path.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def blender_ext_tool() -> Path:
    """``blender_ext.py`` inside the installed bpy module (found without importing bpy)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        raise SystemExit("the bpy module is not installed: pip install -e '.[test]'")
    tools = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not tools:
        raise SystemExit("this bpy ships no blender_ext.py")
    return tools[-1]


def build(out: Path) -> Path:
    """Validate the manifest and build the zip into ``out``; returns the zip's path."""
    tool = blender_ext_tool()
    out.mkdir(parents=True, exist_ok=True)
    for argv in (
        ["validate", str(REPO)],
        ["build", "--source-dir", str(REPO), "--output-dir", str(out)],
    ):
        subprocess.run([sys.executable, str(tool), *argv], check=True)
    return max(out.glob("panoloop-*.zip"), key=lambda p: p.stat().st_mtime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="folder for the zip")
    print(build(parser.parse_args().out))


if __name__ == "__main__":
    main()
