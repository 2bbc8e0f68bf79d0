"""One small module per user action; :data:`CLASSES` in registration order."""

from .animate_hdri import PANOLOOP_OT_animate_hdri
from .apply_world import PANOLOOP_OT_apply_world
from .cancel import PANOLOOP_OT_cancel
from .create_motion_map import PANOLOOP_OT_create_motion_map
from .export_vr import PANOLOOP_OT_export_vr
from .generate_world import PANOLOOP_OT_generate_world
from .multicam import PANOLOOP_OT_render_multicam
from .open_folder import PANOLOOP_OT_open_output_folder
from .serve_headset import PANOLOOP_OT_serve_headset

CLASSES = (
    PANOLOOP_OT_generate_world,
    PANOLOOP_OT_animate_hdri,
    PANOLOOP_OT_create_motion_map,
    PANOLOOP_OT_apply_world,
    PANOLOOP_OT_cancel,
    PANOLOOP_OT_render_multicam,
    PANOLOOP_OT_export_vr,
    PANOLOOP_OT_serve_headset,
    PANOLOOP_OT_open_output_folder,
)
