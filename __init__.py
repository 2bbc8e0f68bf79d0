"""PanoLoop — seamless looping 360° worlds for Blender (extension entry point).

Registers one ordered tuple of classes. Only bpy-level modules are imported here; the
engine (torch, diffusers) runs in its own Python as a subprocess, so enabling the
extension stays instant and Blender never imports torch.
"""

from __future__ import annotations

import bpy

if __package__:
    from . import operators, panels
    from .blender_addon import preferences, properties, runner

    CLASSES = (
        *properties.CLASSES,
        *preferences.CLASSES,
        *operators.CLASSES,
        *panels.CLASSES,
    )
else:
    # Imported as a lone file, not as the extension package: pytest does this to the
    # root of a checkout whose folder name is no Python identifier (e.g. "panoloop-main").
    # Blender always imports the extension as a package; there is nothing to register.
    CLASSES = ()

_keymaps: list[tuple[object, object]] = []


def _register_keymap() -> None:
    """ESC cancels the running job (its poll fails when none runs, so ESC passes on)."""
    keyconfig = bpy.context.window_manager.keyconfigs.addon
    if keyconfig is None:  # background mode: no key configuration
        return
    keymap = keyconfig.keymaps.new(name="Window", space_type="EMPTY")
    item = keymap.keymap_items.new("panoloop.cancel", type="ESC", value="PRESS")
    _keymaps.append((keymap, item))


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    properties.register()
    panels.register()
    runner.register()
    _register_keymap()


def unregister() -> None:
    for keymap, item in _keymaps:
        keymap.keymap_items.remove(item)
    _keymaps.clear()
    runner.unregister()
    panels.unregister()
    properties.unregister()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
