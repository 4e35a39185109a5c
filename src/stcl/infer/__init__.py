"""Inference: sliding window, multi-scale + flip TTA, ensembles, pseudo labels, the submission zip.

Modules (imported directly; this package imports nothing so `stcl submit` stays torch-free):

* `stcl.infer.sliding` — mmseg-style sliding-window logits of one scale.
* `stcl.infer.multiscale` — `TTA` and `tta_probs`: scales × flips with windows of all views batched.
* `stcl.infer.ensemble` — weighted mean of members' probabilities; `load_members` for checkpoints.
* `stcl.infer.predict` — `predict_split`: a split's frames → palette PNGs, per video atomically.
* `stcl.infer.pseudo_labels` — thresholded teacher labels, sharded runs and the gather step.
* `stcl.infer.submission` — validation of test predictions and the submission zip (no torch).
* `stcl.infer.io` — palette PNGs, atomic per-video folders and JSON (no torch).
"""
