"""PanoLoop engine: seamless looping 360° equirectangular video.

Pure Python + numpy/OpenCV/torch; never imports ``bpy``. Runs as a library, as
the CLI ``python -m engine …`` and as the Blender add-on's worker process.

World convention everywhere (Blender's): Z up, the panorama's centre column faces
+X, u=0.25 faces +Y, the 360° seam faces −X, row 0 of an image array is +Z.
"""

__version__ = "0.1.0"
