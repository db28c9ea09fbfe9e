"""faceage: deep age estimation from a face with the mean-variance loss (Pan et al., CVPR 2018)."""

__version__ = "0.1.0"
