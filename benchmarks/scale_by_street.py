"""Which held-out street makes Seq Scale Std, and is it its turning frames? Per-street depth scales of runs.

Reads each run's ``metrics_test.json`` (``scales_by_sequence``: the per-frame median-scaling factor,
ground truth / predicted, in split order) and the benchmark set's ground-truth poses. Per run and
street: the street's mean scale over the mean of all streets (1 = as every street; Seq Scale Std is
the spread of these), and the same split into the street's straighter and its more turning half of
frames (by the true rotation per frame around the target, the median of the street splitting them).

    python benchmarks/scale_by_street.py --data data/synthetic_benchmark_96x320 \
        --runs benchmarks/results/size_96x320_3000/monodepth2{,_sa4depth}_seed{0,1} \
        --out benchmarks/results/scale_by_street_96x320.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from sa4depth.data.layout import atomic_write_text, read_poses, read_split
from sa4depth.errors import InputError, run_script
from sa4depth.eval.odometry import rotation_angle


def rotation_per_frame(T_world_cam: np.ndarray, frame: int) -> float:
    """Mean true rotation (deg per frame) between the target ``frame`` and its two neighbours."""
    first, last = max(frame - 1, 0), min(frame + 1, len(T_world_cam) - 1)
    R = T_world_cam[first, :3, :3].T @ T_world_cam[last, :3, :3]
    return float(np.degrees(rotation_angle(R)) / max(last - first, 1))


def street_table(run: Path, data: Path) -> dict[str, dict[str, float]]:
    """Per street: mean scale / mean over streets, and that for its straighter and more turning half."""
    path = run / "metrics_test.json"
    if not path.is_file():
        raise InputError(path, "missing: not a finished run of compare_sa4depth.py")
    try:
        scales = json.loads(path.read_text())["scales_by_sequence"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise InputError(path, f"not the metrics of a finished run ({type(e).__name__}: {e})") from None
    frames: dict[str, list[int]] = {}
    for sequence, frame in read_split(data / "splits" / "test.txt"):
        frames.setdefault(sequence, []).append(frame)
    overall = np.mean([np.mean(v) for v in scales.values()])
    table = {}
    for sequence, values in scales.items():
        values = np.asarray(values) / overall
        listed = len(frames.get(sequence, []))
        if listed != len(values):
            raise InputError(path, f"{sequence}: {len(values)} scales, but the split lists {listed} frames")
        poses = read_poses(data / "sequences" / sequence / "poses.txt")
        rotation = np.array([rotation_per_frame(poses, f) for f in frames[sequence]])
        turning = rotation > np.median(rotation)
        table[sequence] = {
            "all": float(values.mean()),
            "straighter": float(values[~turning].mean()),
            "turning": float(values[turning].mean()),
            "rotation_deg_median": float(np.median(rotation)),
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="the benchmark set the runs were tested on")
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="finished run folders")
    parser.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    args = parser.parse_args()
    lines = [
        "Command: python benchmarks/scale_by_street.py " + " ".join(sys.argv[1:]),
        "",
        f"Per-street mean depth scale / mean over streets (test split of {args.data}); "
        "in brackets: the street's straighter / more turning half of frames.",
        "",
    ]
    header = None
    for run in args.runs:
        table = street_table(run, args.data)
        if header is None:
            header = list(table)
            rot = " | ".join(f"{s} ({table[s]['rotation_deg_median']:.2f} deg/frame)" for s in header)
            lines += [f"| run | {rot} |", "|---" * (len(header) + 1) + "|"]
        cells = " | ".join(
            f"{table[s]['all']:.3f} ({table[s]['straighter']:.3f} / {table[s]['turning']:.3f})"
            for s in header
        )
        lines.append(f"| {run.parent.name}/{run.name} | {cells} |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    run_script(main)
