"""Differentiable Levenberg-Marquardt refinement of ``T_src_tgt`` on learned (or RGB) feature pyramids.

Three layers, as in theseus / pixloc: `residuals` (feature-alignment residuals ``r_p``, weights and
analytic Jacobians), `solver` (robust kernels, normal equations ``H, g``, damping and `lm_step`) and
`lm` (`LMRefiner`, the coarse-to-fine unrolled loop returning ``(T_refined, info)``).

Pose update: ``T <- Pose.from_aa(omega, v) @ T`` (left retraction), parameters ordered
``delta = (omega_x, omega_y, omega_z, v_x, v_y, v_z)``: rotation (radians) first, then translation.
"""

from sa4depth.refine.lm import LMConfig, LMRefiner, image_pyramid_features
from sa4depth.refine.residuals import (
    LevelProblem,
    Linearization,
    build_level,
    downsample_depth,
    residual_jacobian,
)
from sa4depth.refine.solver import Damping, build_system, lm_step, robust_cost

__all__ = [
    "Damping",
    "LMConfig",
    "LMRefiner",
    "LevelProblem",
    "Linearization",
    "build_level",
    "build_system",
    "downsample_depth",
    "image_pyramid_features",
    "lm_step",
    "residual_jacobian",
    "robust_cost",
]
