"""Inference: sliding window, multi-scale + flip, the frame loop, the video driver and its three writers, shards,
the submission zip.

Modules (imported directly; this package imports nothing so `stcl submit` stays torch-free):

* `stcl.infer.sliding` — sliding-window logits as mmseg's ``slide_inference`` cuts windows (never padded).
* `stcl.infer.multiscale` — `TTA`, its one builder `tta_from_params` (`pseudo_label_tta`: the teacher's), and
  `tta_probs` (views × frames).
* `stcl.infer.frames` — the one frame loop `frame_probs` (each model's TTA once per frame) and `blend`.
* `stcl.infer.driver` — the one video driver: shard, resume, skip-complete, prefetch, progress, hold point,
  atomic video folders; the writers below plug into it.
* `stcl.infer.ensemble` — named models from checkpoints, the precision they run at, weights.
* `stcl.infer.outputs` — the predictions writer: a split's outputs → palette PNGs, per video atomically.
* `stcl.infer.pseudo_labels` — the pseudo-label writer: thresholded teacher labels and their statistics.
* `stcl.infer.shards` — which videos a shard takes, its record, the one gather of records.
* `stcl.infer.video` — `stcl predict` on a user's video: its labels writer and an overlay (rendered by the caller).
* `stcl.infer.submission` — validation of test predictions and the submission zip (no torch).
* `stcl.infer.io` — the label PNG writer (no torch).
"""
