"""Run with the bpy module in a subprocess (tests/test_colour_blender.py).

``tone SRC DST VIEW EXPOSURE``: save SRC (a scene-linear EXR) as an 8-bit PNG through the
scene's view transform, exactly as Blender's *Save As Render* does (dither off).
``read SRC NPY``: load an EXR with Blender's own image loader and save its pixels.
"""

import sys

import bpy
import numpy as np


def tone(src: str, dst: str, view: str, exposure: str) -> None:
    scene = bpy.context.scene
    scene.display_settings.display_device = "sRGB"
    scene.view_settings.view_transform = view
    scene.view_settings.look = "None"
    scene.view_settings.exposure = float(exposure)
    scene.view_settings.gamma = 1.0
    scene.render.dither_intensity = 0.0
    settings = scene.render.image_settings
    settings.file_format = "PNG"
    settings.color_mode = "RGB"
    settings.color_depth = "8"
    bpy.data.images.load(src).save_render(dst, scene=scene)


def read(src: str, dst: str) -> None:
    image = bpy.data.images.load(src)
    width, height = image.size
    pixels = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(pixels)
    # Blender's rows start at the bottom; ours at the top.
    np.save(dst, pixels.reshape(height, width, 4)[::-1, :, :3])


if __name__ == "__main__":
    {"tone": tone, "read": read}[sys.argv[1]](*sys.argv[2:])
