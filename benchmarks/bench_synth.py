"""Benchmark the synthetic-world renderer: frames per second, render-only and writing a dataset.

Usage: python benchmarks/bench_synth.py [--height 192 --width 640 --frames 60 --workers 2 --out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from sa4depth.data import synthetic
from sa4depth.data.synthetic_textures import material_library
from sa4depth.errors import run_script


def render_loop(scene: str, seed: int, frames: int, height: int, width: int, supersample: int) -> dict:
    """Render one sequence in memory; times exclude the one-off scene and texture set-up."""
    t0 = time.perf_counter()
    material_library()
    t_lib = time.perf_counter() - t0
    spec = synthetic.SequenceSpec(scene, seed, frames + 1)
    t0 = time.perf_counter()
    renderer, poses, _ = synthetic._setup(spec, height, width, synthetic.KITTI_INTRINSICS, supersample, None)
    renderer.render(poses[0])  # warm-up
    t_setup = time.perf_counter() - t0
    wall, cpu = time.perf_counter(), time.process_time()
    for pose in poses[1:]:
        renderer.render(pose)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"frames": frames, "wall_s": wall, "cpu_s": cpu, "setup_s": t_setup, "texture_library_s": t_lib}


def _render_loop_job(args) -> dict:
    return render_loop(*args)


def bench_render(scene: str, frames: int, height: int, width: int, supersample: int, workers: int) -> dict:
    """Frames per second of ``workers`` processes rendering one sequence each, side by side."""
    jobs = [(scene, seed, frames, height, width, supersample) for seed in range(workers)]
    if workers == 1:
        runs = [render_loop(*jobs[0])]
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            runs = list(pool.map(_render_loop_job, jobs))
    total = sum(r["frames"] for r in runs)
    return {
        "mode": "render (in memory)",
        "scene": scene,
        "workers": workers,
        "frames": total,
        "fps_wall": total / max(r["wall_s"] for r in runs),
        # What the same processes would reach with a free core each (CPU time excludes time waiting
        # for a core that other jobs hold).
        "fps_from_cpu_time": float(sum(r["frames"] / r["cpu_s"] for r in runs)),
        "ms_per_frame_cpu": float(np.mean([1e3 * r["cpu_s"] / r["frames"] for r in runs])),
        "setup_s": float(np.mean([r["setup_s"] for r in runs])),
        "texture_library_s": float(np.mean([r["texture_library_s"] for r in runs])),
    }


def bench_dataset(
    scene: str, sequences: int, frames: int, height: int, width: int, supersample: int, workers: int
) -> dict:
    """Frames per second of `render_dataset` end to end (PNG and npz encoding included)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    cpu0 = time.process_time() + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    try:
        t0 = time.perf_counter()
        synthetic.render_dataset(
            tmp / "data",
            scene,
            sequences=sequences,
            frames=frames,
            height=height,
            width=width,
            split=(sequences, 0, 0),
            progress=False,
            workers=workers,
            supersample=supersample,
        )
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cpu = time.process_time() + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - cpu0
    return {
        "mode": "render_dataset (writes PNG + npz)",
        "scene": scene,
        "workers": workers,
        "frames": sequences * frames,
        "fps_wall": sequences * frames / wall,
        "wall_s": wall,
        "cpu_s": cpu,
        "ms_per_frame_cpu": 1e3 * cpu / (sequences * frames),
        "fps_from_cpu_time": workers * sequences * frames / cpu,
    }


def machine() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    cpu = ""
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--frames", type=int, default=60, help="frames per sequence")
    parser.add_argument("--supersample", type=int, default=3)
    parser.add_argument("--scenes", nargs="+", default=list(synthetic.SCENES), choices=synthetic.SCENES)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="process counts to measure")
    parser.add_argument("--no-dataset", action="store_true", help="skip the render_dataset measurement")
    parser.add_argument("--note", default="", help="free text stored in the JSON")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    before = machine()
    results = []
    for scene in args.scenes:
        for workers in args.workers:
            r = bench_render(scene, args.frames, args.height, args.width, args.supersample, workers)
            results.append(r)
            print(
                f"{scene:8s} render   workers={workers}: {r['fps_wall']:6.1f} frames/s wall, "
                f"{r['fps_from_cpu_time']:6.1f} from CPU time ({r['ms_per_frame_cpu']:.1f} ms CPU per frame)"
            )
        if not args.no_dataset:
            workers = max(args.workers)
            r = bench_dataset(
                scene, 2 * workers, args.frames, args.height, args.width, args.supersample, workers
            )
            results.append(r)
            print(
                f"{scene:8s} dataset  workers={workers}: {r['fps_wall']:6.1f} frames/s wall, "
                f"{r['fps_from_cpu_time']:6.1f} from CPU time (PNG/npz writing included)"
            )
    report = {
        "benchmark": "sa4depth synthetic renderer",
        "command": " ".join(["python", *sys.argv]),
        "resolution": [args.height, args.width],
        "supersample": args.supersample,
        "target": ">= 20 frames/s at 192 x 640 on 2 CPU cores",
        "note": args.note
        or "Shared machine: the 2 CPU cores also ran other jobs, so wall-clock rates are lower bounds; "
        "ms_per_frame_cpu is this process's CPU time and is less affected by the sharing.",
        "machine_before": before,
        "machine_after": machine(),
        "results": results,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    run_script(main)
