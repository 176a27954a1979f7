"""SA4Depth: self-supervised monocular depth with training-time LM pose refinement.

Core subpackages: geometry, models, refine, losses, data, eval, train (and `sa4depth.inference`, the
depth-net loader); above them, never imported by them, `sa4depth.apps`: the command line and its tools.
"""

__version__ = "0.1.0"
