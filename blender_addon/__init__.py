"""Blender glue for PanoLoop: bpy only, never torch (the engine runs in its own process).

Rooms: ``preferences`` (the add-on preferences), ``properties`` (``scene.panoloop`` and
the window manager's job display), ``engine_env`` (where the engine's Python and the
outputs live, how a worker is started), ``runner`` (the worker subprocess, its reader
thread and the main-thread timer), ``world`` (an output folder → a looping World
texture), ``jobs`` (scene settings → engine command lines), ``scene_io`` (scene cameras
→ ``cameras.json``).
"""
