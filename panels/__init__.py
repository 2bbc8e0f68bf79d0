"""The World tab panel and the 3D viewport sidebar panel; :data:`CLASSES` in order."""

from ._draw import register, unregister
from .sidebar import PANOLOOP_PT_sidebar
from .world import PANOLOOP_PT_world

CLASSES = (PANOLOOP_PT_world, PANOLOOP_PT_sidebar)

__all__ = ["CLASSES", "register", "unregister"]
