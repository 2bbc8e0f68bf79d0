"""Blender glue for PanoLoop: bpy only, never torch (the engine runs in its own process)."""
