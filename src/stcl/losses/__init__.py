"""Losses: the spatial-temporal consistency loss (paper eq. 1-2) and the full segmentor objective."""

from stcl.losses.segmentation import cross_entropy, segmentor_loss
from stcl.losses.stcl import sample_anchors, spatial_temporal_consistency_loss

__all__ = ["cross_entropy", "sample_anchors", "segmentor_loss", "spatial_temporal_consistency_loss"]
