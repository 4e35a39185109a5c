"""stcl: video scene parsing with a spatial-temporal consistency loss (VSPW 2021, 1st place) as a workflow."""

__version__ = "0.1.0"
