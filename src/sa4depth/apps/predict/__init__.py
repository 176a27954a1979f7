"""Depth prediction with a trained checkpoint (the depth network only) for images, folders and videos.

Writes colour-mapped PNGs, raw ``.npy`` depth, optional side-by-side videos and a ``predictions.json``
manifest.

Units. A self-supervised monocular model predicts depth up to an unknown scale ("network units"). Two ways
to make it metric are offered, and every output says which one was used:

* ``scale=s``: multiply by a factor the user knows (e.g. from a measured distance);
* ``camera_height=h`` (metres): fit the ground plane to the 3D points of the bottom rows of the
  predicted depth (`fit_ground_height`); its distance to the camera centre is the camera height in network
  units ``h_net``, and depth is multiplied by ``h / h_net``. For a level camera this is the median of the
  ground points' Y (camera y points down); the plane fit also handles a camera pitched or rolled by up to
  30 degrees and ignores cars, walls or people in the bottom rows (RANSAC). A video gets one factor, ``h``
  over the median ``h_net`` of up to 16 evenly spaced frames, so its scale does not flicker.

Intrinsics (needed for ``camera_height`` and point clouds) default to the camera the model was trained
with, resized to the input: from the checkpoint's ``"sa4depth_intrinsics"`` entry if present, else from the
training dataset named in its config if that dataset is still on disk. Otherwise pass ``fx`` (pixels, at
the input's resolution) or ``fov`` (horizontal field of view, degrees); the principal point is then the
image centre. Inputs are resized (not cropped) to the training resolution: a camera with a different
aspect ratio or field of view than the training camera gets distorted, less accurate depth (an aspect
ratio off by more than `ASPECT_WARN_FACTOR` is warned about, as is a model trained only on the synthetic
world applied to other images).
"""

from sa4depth.apps.predict.colormap import colorize_depth, disparity_range, legend_image
from sa4depth.apps.predict.inputs import MANIFEST, InputItem, collect_inputs, plan_outputs
from sa4depth.apps.predict.intrinsics import training_data
from sa4depth.apps.predict.metric_scale import NETWORK_UNITS, fit_ground_height
from sa4depth.apps.predict.outputs import predict_paths, save_depth_outputs
from sa4depth.apps.predict.predictor import ASPECT_WARN_FACTOR, DepthPredictor
from sa4depth.data.intrinsics import intrinsics_from_fov

__all__ = [
    "ASPECT_WARN_FACTOR",
    "MANIFEST",
    "NETWORK_UNITS",
    "DepthPredictor",
    "InputItem",
    "collect_inputs",
    "colorize_depth",
    "disparity_range",
    "fit_ground_height",
    "intrinsics_from_fov",
    "legend_image",
    "plan_outputs",
    "predict_paths",
    "save_depth_outputs",
    "training_data",
]
