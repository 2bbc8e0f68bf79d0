"""Prompt → seamless looping 360° video: diffusers backends and DynamicScaler-style sampling.

Rooms: :mod:`.backends` (the small model interface and the AnimateDiff backend),
:mod:`.loading` (finding, checking and loading weights before a backend runs),
:mod:`.ring` (the ring latent and index views), :mod:`.schedule` (shifted windows,
sphere views, camera views, the coarse-to-fine stage plan), :mod:`.sampler` (the
denoising loop and the wrapped decode) and :mod:`.command` (``python -m engine generate``).
"""
