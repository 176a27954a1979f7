"""How far does the baseline's depth get when its poses are perfect? Monodepth2 on ground-truth poses.

The CPU recipe's Monodepth2 baseline with one change: every pose the loss uses is the ground-truth
``T_src_tgt`` of the batch (flipped with the images by the augmentation), not the pose net's, with
its translation in units of ``--unit`` metres: the depth net's sigmoid covers 0.1-100 units and starts
near 0.2, and joint training settles on about 50 m per unit (the test metrics' median scale is 46-56);
metric translations would ask it for 5-80 units from a saturated sigmoid.
The gap between this run and the baseline at the same step is what the pose net costs the depth; the
gap to + SA4Depth says how much of that the LM's refined poses win back. Runs like
`compare_sa4depth.py` (validation curve, held-out test metrics, resumable, a finished run is skipped);
the pose net still exists but gets no gradient, so the pose columns of its metrics mean nothing.

    OMP_NUM_THREADS=1 python benchmarks/pose_oracle.py --steps 600 --seeds 0
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

from sa4depth.config import load_config
from sa4depth.data import synthetic
from sa4depth.errors import run_script
from sa4depth.eval.report_table import write_metrics_json
from sa4depth.geometry import Pose
from sa4depth.recipes import recipe_path
from sa4depth.train.model import DepthPoseModel


def _compare():
    """`compare_sa4depth` (a script beside this one, not a package module)."""
    path = Path(__file__).with_name("compare_sa4depth.py")
    spec = importlib.util.spec_from_file_location("compare_sa4depth", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def use_ground_truth_poses(unit: float) -> None:
    """Make every `DepthPoseModel` train on its batch's ground-truth poses instead of the pose net's.

    Args:
        unit: metres per network depth unit; the ground-truth translations are divided by it.
    """
    original = DepthPoseModel.training_forward

    def training_forward(self, batch, step=0):
        T = batch["T_src_tgt"].clone()
        T[..., :3, 3] /= unit
        poses = [Pose.from_4x4mat(T[:, j]) for j in range(T.shape[1])]
        self.predict_poses = lambda images: poses  # shadows the method for this one step
        try:
            return original(self, batch, step)
        finally:
            del self.predict_poses

    DepthPoseModel.training_forward = training_forward


def drop_pose_curves(curve_file: Path) -> None:
    """Remove the pose net's validation curves from ``curve.json``: that net is never trained here."""
    curve = json.loads(curve_file.read_text())
    if curve.pop("val/pose_depth_scale_ratio", None) is not None:
        write_metrics_json(curve_file, curve)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="benchmarks/results/pose_oracle", help="default: %(default)s")
    parser.add_argument("--data", default="data/synthetic_benchmark_64x192", help="default: %(default)s")
    parser.add_argument("--steps", type=int, required=True, help="training steps per run")
    parser.add_argument("--unit", type=float, default=50.0, help="metres per depth unit (default: 50)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="default: %(default)s")
    parser.add_argument("overrides", nargs="*", help="extra config overrides")
    args = parser.parse_args()
    compare = _compare()
    recipe = recipe_path("synthetic_cpu")
    base = load_config(recipe, args.overrides)
    synthetic.ensure_benchmark(args.data, base.data.height, base.data.width)
    use_ground_truth_poses(args.unit)
    out = Path(args.out)
    rows = []
    for seed in args.seeds:
        overrides = [
            f"data.root={args.data}",
            f"trainer.max_steps={args.steps}",
            f"trainer.seed={seed}",
            "loss.pipeline=monodepth2",
            *args.overrides,
        ]
        run_dir = out / compare.run_name("monodepth2", seed)
        row = compare.flat_summary(compare.run_one(run_dir, overrides, recipe))
        rows.append({**row, "pose_depth_ratio": None, "ate_5frame": None})  # the untrained pose net's
        drop_pose_curves(run_dir / "curve.json")
    table = compare.summarise({"monodepth2, ground-truth poses": rows})
    command = (
        f"python benchmarks/pose_oracle.py --steps {args.steps} --unit {args.unit:g} "
        f"--seeds {' '.join(map(str, args.seeds))} "
        f"--out {out} {' '.join(args.overrides)}"
    ).strip()
    compare.atomic_write_text(out / "summary.md", f"Command: {command}\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    run_script(main)
