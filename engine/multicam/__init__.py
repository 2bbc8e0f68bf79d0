"""Every camera of a scene, in sync, from a looping panorama (``python -m engine multicam``).

Rooms: :mod:`.command` (the CLI and its input checks), :mod:`.folder` (clips, renders,
MP4s, the folder written atomically), :mod:`.sheet` (the labelled contact sheet).

Output folder::

    views/<camera>/frame_000000.png …   the panorama reprojected into each camera
                                        (``engine views``; same count, same numbers)
    renders/<camera>/frame_000000.png … with ``--renders``: Blender's own renders of the
                                        scene through each camera (same numbers)
    <camera>.mp4, <camera>_render.mp4   one clip per camera, all of equal length
    contact_sheet.png                   rows = cameras (reprojection, then render),
                                        columns = a few instants; labelled: camera
                                        names and row kinds on the left, frame and
                                        time of each column on top
    cameras.json                        Blender values + OpenCV K, camera-to-world and
                                        poses relative to the first (reference) camera
    manifest.json

Frame n of every clip shows the same instant of the loop. With ``--frame-range START
END`` (Blender's scene frames) the range must span exactly the loop, so Blender frame
START + n is loop frame n; anything else would desynchronise the renders.
"""
