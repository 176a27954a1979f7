"""Networks: depth (encoder + decoder), pose, and the ImageNet-compatible encoders they use.

Import submodules directly for the rest (e.g. `sa4depth.models.resnet.load_imagenet_weights`).
"""

from sa4depth.models.depth_net import DepthNet, disp_to_depth
from sa4depth.models.pose_net import PoseNet

__all__ = ["DepthNet", "PoseNet", "disp_to_depth"]
