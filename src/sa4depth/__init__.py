"""SA4Depth: self-supervised monocular depth with training-time LM pose refinement.

Subpackages: geometry, models, refine, losses, data, train, eval; the command line is `sa4depth.cli`.
"""

__version__ = "0.1.0"
