"""Work spread over a Ray cluster: Blender renders split into tasks (``render-cluster``).

- :mod:`engine.cluster.connect` — join a cluster by address or start one on this machine
  (``local``); Ray is an optional extra (``pip install 'panoloop-engine[cluster]'``), so it
  is imported only when a cluster is asked for, and its absence is refused in one line;
- :mod:`engine.cluster.renders` — a render step (every camera, or the scene in 360°) as
  tasks of one camera × a frame range, each a background Blender on a packed copy of
  the scene shipped through Ray's object store; the frames come back the same way;
- :mod:`engine.cluster.command` — ``python -m engine render-cluster``, the driver the
  add-on runs in the engine's Python when the *Render Cluster* preference is set.
"""
