"""Datasets that yield training snippets, one module per source, behind one sample format.

A sample (one target frame and its sources) is a dict:

* ``images``: ``(N, 3, H, W)`` float32 in [0, 1]; index 0 is the target, 1.. the sources in the
  order of the configured frame offsets (default ``[-1, 1]``). Loss targets use these.
* ``images_aug``: the same frames colour-augmented (network inputs); equal to ``images`` at test time.
* ``K``: ``(3, 3)`` float32 intrinsics at ``H x W`` (see `sa4depth.geometry` for conventions).
* ``depth``: ``(1, H, W)`` float32 ground-truth z-depth of the target in metres, 0 = unknown;
  ``has_depth``: bool. Evaluation splits of Cityscapes and NYUv2 give it at the ground truth's own
  full resolution instead, which their protocols crop; metrics resize predictions to it.
* ``T_src_tgt``: ``(N - 1, 4, 4)`` float32 ground-truth relative poses (identity when unknown);
  ``has_pose``: bool.
* ``sequence``: str, ``frame``: int.
"""
