"""The ``sa4depth`` command: make data, train, evaluate, predict, and run the built-in demo.

Every user-input problem ends in one ``error: <file>: <problem>`` line and exit code 2, not a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sa4depth.errors import InputError

DESCRIPTION = """\
SA4Depth: self-supervised monocular depth (Monodepth2 / SC-Depth pipelines) with a training-time,
differentiable Levenberg-Marquardt pose refinement that aligns the scales of depth and pose.
Inference is the depth network alone.

Typical use:
  sa4depth demo                                   # render a world, train baseline and +SA4Depth, compare
  sa4depth synth --out data/world                 # render a synthetic video dataset with GT
  sa4depth prepare my_drive.mp4 --out data/mine --fov 70   # your own video -> a training dataset
  sa4depth train --config configs/monodepth2_sa4depth.yaml data.root=data/world
  sa4depth evaluate --checkpoint runs/x/checkpoints/best.ckpt --output metrics.json
  sa4depth predict --checkpoint runs/x/checkpoints/best.ckpt photo.jpg --output depth_out/
"""


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="render a synthetic video dataset with ground-truth depth and poses")
    p.add_argument("--scene", choices=["driving", "indoor"], default="driving")
    p.add_argument("--sequences", type=int, default=20)
    p.add_argument("--frames", type=int, default=100, help="frames per sequence")
    p.add_argument("--height", type=int, default=192)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--benchmark", action="store_true", help="write the fixed benchmark set instead")
    p.add_argument("--out", required=True, help="output dataset folder (written atomically)")
    p.set_defaults(func=_run_synth)


def _run_synth(args) -> None:
    from sa4depth.data import synthetic

    if args.benchmark:
        path = synthetic.benchmark_set(args.out, height=args.height, width=args.width)
    else:
        path = synthetic.render_dataset(
            args.out,
            scene=args.scene,
            sequences=args.sequences,
            frames=args.frames,
            height=args.height,
            width=args.width,
            seed=args.seed,
            progress=True,
        )
    print(f"dataset written to {path}")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train depth + pose networks (optionally with SA4Depth refinement)")
    p.add_argument("--config", help="YAML config (see configs/); defaults apply to missing keys")
    p.add_argument("--resume", action="store_true", help="continue from <output_dir>/checkpoints/last.ckpt")
    p.add_argument("--max-steps", type=int, help="shortcut for trainer.max_steps=N")
    p.add_argument("--max-epochs", type=int, help="shortcut for trainer.max_epochs=N")
    p.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. refine.enabled=true")
    p.set_defaults(func=_run_train)


def _overrides(args) -> list[str]:
    extra = list(args.overrides)
    if getattr(args, "max_steps", None) is not None:
        extra.append(f"trainer.max_steps={args.max_steps}")
    if getattr(args, "max_epochs", None) is not None:
        extra.append(f"trainer.max_epochs={args.max_epochs}")
    return extra


def _run_train(args) -> None:
    from sa4depth.config import load_config
    from sa4depth.train.run import train

    cfg = load_config(args.config, _overrides(args))
    path = train(cfg, resume=args.resume)
    print(f"checkpoints in {path}")


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="depth metrics, scale consistency and pose errors of a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--protocol", help="evaluation protocol (default: the checkpoint's eval_protocol)")
    p.add_argument("--output", default="metrics.json", help="JSON file with every metric")
    p.add_argument("overrides", nargs="*", help="data overrides, e.g. data.root=/path/to/data")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args) -> None:
    from sa4depth.config import config_from_dict, config_to_dict
    from sa4depth.demo import COLUMNS, flat_summary
    from sa4depth.eval.evaluate import evaluate_model
    from sa4depth.eval.report_table import format_table, write_metrics_json
    from sa4depth.train.run import load_checkpoint

    system, cfg = load_checkpoint(args.checkpoint)
    if args.overrides:
        from omegaconf import OmegaConf

        merged = OmegaConf.merge(
            OmegaConf.create(config_to_dict(cfg)), OmegaConf.from_dotlist(args.overrides)
        )
        cfg = config_from_dict(OmegaConf.to_container(merged))
    results = evaluate_model(system.model, cfg, split=args.split, protocol=args.protocol, progress=True)
    results["checkpoint"] = str(args.checkpoint)
    write_metrics_json(args.output, results)
    print(format_table({Path(args.checkpoint).name: flat_summary(results)}, COLUMNS))
    print(f"metrics written to {args.output}")


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="depth maps for images, folders or videos")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("inputs", nargs="+", help="image files, folders (searched recursively) or video files")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--batch-size", type=int, default=4)
    p.set_defaults(func=_run_predict)


def _run_predict(args) -> None:
    from sa4depth.predict import predict_paths

    written = predict_paths(args.checkpoint, args.inputs, args.output, batch_size=args.batch_size)
    print(f"{written} depth maps written to {args.output}")


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="the built-in default: render a world, train baseline and +SA4Depth, compare"
    )
    p.add_argument("--out", default="runs/demo", help="output folder (data, runs, comparison table)")
    p.add_argument("--minutes", type=float, default=6.0, help="training budget per model, in minutes")
    p.add_argument("--quick", action="store_true", help="a 1-minute smoke run (tiny data, few steps)")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> None:
    from sa4depth.demo import run_demo

    run_demo(args.out, minutes=args.minutes, quick=args.quick)


def _add_prepare(sub) -> None:
    p = sub.add_parser(
        "prepare", help="turn your videos or folders of frames into a training dataset (docs/own_video.md)"
    )
    p.add_argument(
        "inputs", nargs="+", help="video files, folders of frames (with an optional cam.txt), or of videos"
    )
    p.add_argument("--out", required=True, help="dataset folder to create (written atomically)")
    p.add_argument("--height", type=int, default=192, help="output frame height (default 192)")
    p.add_argument("--width", type=int, default=640, help="output frame width (default 640)")
    intrinsics = p.add_mutually_exclusive_group()
    intrinsics.add_argument("--cam", help="cam.txt with the 3x3 K of the inputs at their native resolution")
    intrinsics.add_argument("--focal", type=float, help="focal length in pixels at the native resolution")
    intrinsics.add_argument("--fov", type=float, help="horizontal field of view in degrees")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--stride", type=int, default=1, help="keep every N-th frame")
    rate.add_argument("--fps", type=float, help="subsample videos to this frame rate")
    p.add_argument(
        "--static-threshold",
        type=float,
        default=argparse.SUPPRESS,
        help="drop frames whose grey thumbnail differs from the previous kept one by less than this "
        "(mean absolute difference, intensities 0-1; default 0.005; 0 keeps every frame)",
    )
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of sequences for validation")
    p.add_argument(
        "--chunk", type=int, default=200, help="one input is cut into sequences of about N frames (0 = no)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=_run_prepare)


def _run_prepare(args) -> None:
    from sa4depth.data.prepare import format_summary, prepare_dataset

    extra = {"static_threshold": args.static_threshold} if hasattr(args, "static_threshold") else {}
    summary = prepare_dataset(
        args.inputs,
        args.out,
        height=args.height,
        width=args.width,
        cam=args.cam,
        focal=args.focal,
        fov=args.fov,
        stride=args.stride,
        fps=args.fps,
        val_fraction=args.val_fraction,
        chunk=args.chunk,
        overwrite=args.overwrite,
        progress=True,
        **extra,
    )
    print(format_summary(summary))
    print(f"dataset written to {args.out}")
    print(f"train with: sa4depth train --config configs/own_video.yaml data.root={args.out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sa4depth", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_demo, _add_synth, _add_prepare, _add_train, _add_evaluate, _add_predict):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.command is None:
        parser.print_help()
        return 0
    try:
        args.func(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
