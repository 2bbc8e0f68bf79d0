"""VR export: spherical MP4 metadata, headset-safe H.264, cubemaps and the WebXR package."""
