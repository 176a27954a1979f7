"""Time one forward + backward of the LM refinement (and of FeatureNet + LM) at training resolutions.

Usage: ``python benchmarks/bench_lm.py --batch 4 --sizes 96x320 192x640 --threads 1 2``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sa4depth.errors import run_script
from sa4depth.geometry import Camera, Pose
from sa4depth.models.feature_net import FeatureNet
from sa4depth.refine import LMConfig, LMRefiner


def _inputs(batch: int, H: int, W: int, device: str):
    images = torch.rand(2 * batch, 3, H, W, device=device)
    # KITTI-like intrinsics as Monodepth2 normalises them.
    K = torch.tensor([0.58 * W, 1.92 * H, 0.5 * W - 0.5, 0.5 * H - 0.5], device=device)
    camera = Camera(torch.cat([torch.tensor([W, H], device=device, dtype=K.dtype), K]).expand(batch, 6))
    depth = (5.0 + 15.0 * torch.rand(batch, 1, H, W, device=device)).requires_grad_()
    aa = torch.tensor([0.0, 0.01, 0.0], device=device).expand(batch, 3)
    t = torch.tensor([0.0, 0.0, 0.5], device=device).expand(batch, 3)
    T_init = Pose(Pose.from_aa(aa, t).data.clone().requires_grad_())
    return images, camera, depth, T_init


def _time(fn, repeats: int, device: str) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(net: FeatureNet, lm: LMRefiner, B: int, H: int, W: int, repeats: int, device: str):
    """Median seconds of LM forward+backward, and of FeatureNet (on 2B images) + LM forward+backward."""
    images, camera, depth, T_init = _inputs(B, H, W, device)
    with torch.no_grad():
        out = net(images)
    feats = [f.detach().requires_grad_() for f in out["features"]]
    confs = [c.detach().requires_grad_() for c in out["confidence"]]

    def refine(f, c):
        T, _ = lm(
            [x[:B] for x in f],
            [x[:B] for x in c],
            [x[B:] for x in f],
            [x[B:] for x in c],
            depth,
            camera,
            T_init,
        )
        T.data.sum().backward()

    def with_features():
        o = net(images)
        refine(o["features"], o["confidence"])

    return _time(lambda: refine(feats, confs), repeats, device), _time(with_features, repeats, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--sizes", nargs="+", default=["96x320", "192x640"])
    parser.add_argument("--threads", nargs="+", type=int, default=[torch.get_num_threads()])
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    net = FeatureNet(levels=args.levels).to(args.device)
    lm = LMRefiner(LMConfig(levels=args.levels, iterations=args.iterations)).to(args.device)
    for threads in args.threads:
        torch.set_num_threads(threads)
        for size in args.sizes:
            H, W = (int(x) for x in size.split("x"))
            t_lm, t_all = bench(net, lm, args.batch, H, W, args.repeats, args.device)
            print(
                f"device={args.device} threads={threads} B={args.batch} {H}x{W} levels={args.levels} "
                f"iters={args.iterations}: LM fwd+bwd {t_lm * 1e3:.0f} ms, "
                f"FeatureNet(2B images)+LM fwd+bwd {t_all * 1e3:.0f} ms"
            )


if __name__ == "__main__":
    run_script(main)
