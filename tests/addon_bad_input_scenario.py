"""Bad input through the add-on's operators, in the real bpy module (run as a script).

``tests/test_bad_input.py`` starts ``python tests/addon_bad_input_scenario.py CONFIG`` in
a fresh process under a temporary HOME (as ``tests/test_addon_blender.py`` does); this
installs the extension zip, tries each bad input through ``bpy.ops.panoloop.*`` and writes
what Blender reported to a JSON file. Kept to a few cases: each costs Blender's start-up.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from test_addon_blender import PACKAGE, _install


def _report(call) -> dict:
    """An operator's outcome: ``{"result": ..., "error": the ERROR report or None}``."""
    try:
        return {"result": sorted(call()), "error": None}
    except RuntimeError as exc:  # bpy raises RuntimeError carrying the ERROR report
        return {"result": ["CANCELLED"], "error": str(exc)}


def _outputs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def scenario(config: dict) -> dict:
    import bpy

    _result, prefs = _install(config)
    settings = bpy.context.scene.panoloop
    rna = settings.bl_rna.properties
    seen: dict = {
        "limits": {
            name: [rna[name].hard_min, rna[name].hard_max]
            for name in ("fps", "seed", "strength", "seconds")
        }
    }
    outputs = Path(config["tmp"]) / "outputs"
    settings.mode = "ANIMATE"
    settings.seconds, settings.fps = 0.5, 6

    # 1. The output folder preference names a file.
    prefs.output_dir = config["a_file"]
    settings.source_image = config["pano"]
    seen["output_is_a_file"] = _report(bpy.ops.panoloop.animate_hdri)
    prefs.output_dir = str(outputs)

    # 2. The engine refuses the input (a damaged image): one error report, nothing left.
    settings.source_image = config["not_an_image"]
    seen["engine_refuses"] = _report(bpy.ops.panoloop.animate_hdri)
    seen["engine_refuses"]["outputs"] = _outputs(outputs)

    # 3. Apply Loop to World on an output folder whose manifest is untrusted nonsense.
    seen["bad_manifest"] = _report(
        lambda: bpy.ops.panoloop.apply_world(directory=config["bad_manifest"])
    )
    seen["package"] = PACKAGE
    return seen


if __name__ == "__main__":
    config = json.loads(sys.argv[1])
    result = scenario(config)
    Path(config["results"]).write_text(json.dumps(result, indent=2, default=str))
