"""Dataset readers (VSPW, COCO panoptic, ADE20K), class tables, clip sampling and augmentation.

Submodules are imported explicitly (``from stcl.data import vspw``); importing ``stcl.data`` itself stays
light (no torch), so `stcl synth` and `stcl check-data` start fast.
"""
