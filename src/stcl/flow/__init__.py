"""Optical flow for the TC metric: RAFT (torchvision's ``raft_large``) run as the official VSPW TC script runs it.

* `stcl.flow.raft` — the model, its weights files (official ``raft-things.pth`` or torchvision's), the padding
  and the flow of one frame pair;
* `stcl.flow.warp` — the official nearest-neighbour warp of TC_cal.py as a source map per pair (what TC reads
  of a flow);
* `stcl.flow.cache` — the `stcl flow` stage: flows of a split computed once and stored as warp maps, so every
  model's TC (`stcl.metrics.tc`) reads them (`stcl.flow.store`, without torch) instead of running RAFT again.
"""
