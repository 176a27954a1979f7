"""Training losses: photometric reprojection, smoothness, SC-Depth geometry consistency, pose consistency.

Each is a plain function of tensors, testable without Lightning.
"""

from sa4depth.losses.photometric import min_reprojection_loss, photometric_error, ssim
from sa4depth.losses.smoothness import edge_aware_smoothness

__all__ = ["edge_aware_smoothness", "min_reprojection_loss", "photometric_error", "ssim"]
