"""Blender cameras from a panorama: :mod:`.command` (``python -m engine views``) and
:mod:`.render` (every camera rendered from every frame, in sync)."""
