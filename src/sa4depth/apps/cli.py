"""The ``sa4depth`` command: make data, train, evaluate, predict, and run the built-in demo.

Every user-input problem ends in one ``error: <file>: <problem>`` line and exit code 2, not a traceback.
"""

from __future__ import annotations

import argparse
import json
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
  sa4depth predict --checkpoint runs/x/checkpoints/best.ckpt photo.jpg clip.mp4 --output depth_out/
  sa4depth export --checkpoint runs/x/checkpoints/best.ckpt --format onnx --output depth.onnx
  sa4depth pointcloud --checkpoint runs/x/checkpoints/best.ckpt photo.jpg --fov 70 --output cloud.ply
  sa4depth report runs/x                          # one HTML page: metrics, depth images, plots, config
"""


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="render a synthetic video dataset with ground-truth depth and poses")
    p.add_argument(
        "--scene",
        choices=["driving", "indoor"],
        default="driving",
        help="driving (a street) or indoor (rooms); default: %(default)s",
    )
    p.add_argument(
        "--sequences", type=int, default=20, help="number of sequences to render (default: %(default)s)"
    )
    p.add_argument("--frames", type=int, default=100, help="frames per sequence (default: %(default)s)")
    p.add_argument("--height", type=int, help="frame height (default 192; 96 with --benchmark)")
    p.add_argument("--width", type=int, help="frame width (default 640; 320 with --benchmark)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="master seed: the same options give identical files (default: %(default)s; --benchmark: fixed)",
    )
    p.add_argument("--workers", type=int, default=1, help="rendering processes (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument(
        "--benchmark",
        action="store_true",
        help="write the fixed benchmark set (train/val/test speeds; ignores --sequences, --frames, --seed)",
    )
    p.add_argument("--out", required=True, help="output dataset folder (written atomically)")
    p.set_defaults(func=_run_synth)


def _run_synth(args) -> None:
    from sa4depth.data import synthetic

    # The renderer's own checks raise ValueError (it is a library call); here they are user input.
    for option, value, least in (("--sequences", args.sequences, 1), ("--frames", args.frames, 3)):
        if value < least:
            what = (
                "sequence" if option == "--sequences" else "frames per sequence (a target and two neighbours)"
            )
            raise InputError(option, f"must be at least {least} {what}, got {value}")
    for option, value in (("--height", args.height), ("--width", args.width)):
        if value is not None and not 8 <= value <= 4096:
            raise InputError(option, f"must be in [8, 4096] pixels, got {value}")
    if args.workers < 1:
        raise InputError("--workers", f"must be at least 1 rendering process, got {args.workers}")
    common = dict(scene=args.scene, workers=args.workers, overwrite=args.overwrite, progress=True)
    if args.benchmark:
        path = synthetic.benchmark_set(args.out, height=args.height or 96, width=args.width or 320, **common)
    else:
        path = synthetic.render_dataset(
            args.out,
            sequences=args.sequences,
            frames=args.frames,
            height=args.height or 192,
            width=args.width or 640,
            seed=args.seed,
            **common,
        )
    print(f"dataset written to {path}")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train depth + pose networks (optionally with SA4Depth refinement)")
    p.add_argument(
        "--config",
        help="YAML config file (see configs/); the built-in defaults fill missing keys "
        "(default: the built-in defaults alone)",
    )
    existing = p.add_mutually_exclusive_group()
    existing.add_argument(
        "--resume", action="store_true", help="continue from <output_dir>/checkpoints/last.ckpt"
    )
    existing.add_argument(
        "--overwrite",
        action="store_true",
        help="delete a previous run's checkpoints/, tensorboard/ and config.yaml in output_dir first "
        "(without --resume or --overwrite, an output_dir holding a run is refused)",
    )
    existing.add_argument(
        "--fork-from",
        metavar="CKPT",
        help="start from another run's checkpoint at a step before which the two trainings are the same "
        "(a baseline's checkpoints/step_N.ckpt, kept with trainer.keep_checkpoint_steps=[N], for SA4Depth "
        "with refine.warmup_steps=N); the configs may differ only in refine.* and output_dir "
        "(default: none, a run from step 0)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        help="shortcut for trainer.max_steps=N (default: the config's, -1 = no limit)",
    )
    p.add_argument(
        "--max-epochs", type=int, help="shortcut for trainer.max_epochs=N (default: the config's, 20)"
    )
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
    from sa4depth.train.run import TrainingInterrupted, train

    cfg = load_config(args.config, _overrides(args))
    if args.fork_from:
        from sa4depth.train.fork import fork_run

        fork_run(args.fork_from, cfg)
    try:
        path = train(cfg, resume=args.resume or bool(args.fork_from), overwrite=args.overwrite)
    except TrainingInterrupted as e:
        print(e, file=sys.stderr)  # what was saved and how to continue, instead of main's bare "interrupted"
        raise SystemExit(130) from None
    print(f"checkpoints in {path}")


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="depth metrics, scale consistency and pose errors of a checkpoint")
    p.add_argument("--checkpoint", required=True, help="training checkpoint (.ckpt) to evaluate")
    p.add_argument(
        "--split",
        default="test",
        help="split of the checkpoint's dataset, <data.root>/splits/<SPLIT>.txt (default: %(default)s)",
    )
    p.add_argument("--protocol", help="evaluation protocol (default: the checkpoint's eval_protocol)")
    p.add_argument(
        "--output", default="metrics.json", help="JSON file with every metric (default: %(default)s)"
    )
    p.add_argument("overrides", nargs="*", help="data overrides, e.g. data.root=/path/to/data")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args) -> None:
    from sa4depth.apps.demo import COLUMNS, flat_summary
    from sa4depth.config import config_from_dict, config_to_dict
    from sa4depth.data.layout import check_output_file
    from sa4depth.eval.evaluate import evaluate_model
    from sa4depth.eval.report_table import format_table, write_metrics_json
    from sa4depth.train.run import load_checkpoint

    check_output_file(args.output)  # before the evaluation, not after it
    for item in args.overrides:
        if "=" not in item:  # OmegaConf would read it as "set to None", blamed on the checkpoint
            raise InputError("command line", f"override {item!r} is not key=value")
    system, cfg = load_checkpoint(args.checkpoint)
    if args.overrides:
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        try:
            merged = OmegaConf.merge(
                OmegaConf.create(config_to_dict(cfg)), OmegaConf.from_dotlist(args.overrides)
            )
            cfg = config_from_dict(OmegaConf.to_container(merged))
        except OmegaConfBaseException as e:
            raise InputError("command line", str(e).splitlines()[0]) from None
        except InputError as e:  # the checkpoint's own config was valid: the overrides are to blame
            raise InputError("command line", e.problem) from None
    results = evaluate_model(system.model, cfg, split=args.split, protocol=args.protocol, progress=True)
    results["checkpoint"] = str(args.checkpoint)
    write_metrics_json(args.output, results)
    print(format_table({Path(args.checkpoint).name: flat_summary(results)}, COLUMNS))
    print(f"metrics written to {args.output}")


def _add_scale_and_camera_options(p) -> None:
    """Metric scaling and intrinsics options shared by `predict` and `pointcloud`."""
    metric = p.add_mutually_exclusive_group()
    metric.add_argument(
        "--scale",
        type=float,
        help="multiply depth by this known factor (default: none, depth in network units)",
    )
    metric.add_argument(
        "--camera-height",
        type=float,
        help="camera height above the ground in metres: metric depth from a ground-plane fit "
        "(default: none, depth in network units)",
    )
    camera = p.add_mutually_exclusive_group()
    camera.add_argument(
        "--fx",
        type=float,
        help="focal length in pixels at the input resolution (default: the training camera, resized)",
    )
    camera.add_argument(
        "--fov",
        type=float,
        help="horizontal field of view in degrees (default: the training camera, resized)",
    )


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="depth maps for images, folders or videos")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="training checkpoint (.ckpt) or weights file (sa4depth export --format weights)",
    )
    p.add_argument("inputs", nargs="+", help="image files, folders (searched recursively) or video files")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--batch-size", type=int, default=4, help="images per network call (default: %(default)s)")
    p.add_argument("--video-out", action="store_true", help="also write <video>_side_by_side.mp4 per video")
    p.add_argument("--legend", action="store_true", help="add a colour bar with depth values to the PNGs")
    _add_scale_and_camera_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_predict)


def _run_predict(args) -> None:
    from sa4depth.apps.predict import MANIFEST, predict_paths

    written = predict_paths(
        args.checkpoint,
        args.inputs,
        args.output,
        batch_size=args.batch_size,
        video_out=args.video_out,
        scale=args.scale,
        camera_height=args.camera_height,
        legend=args.legend,
        fx=args.fx,
        fov=args.fov,
        progress=not args.no_progress,
    )
    print(
        f"{written} depth maps written to {args.output} (units and scale in {Path(args.output) / MANIFEST})"
    )


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export", help="export the depth network (inference model) to TorchScript, ONNX or a weights file"
    )
    p.add_argument("--checkpoint", required=True, help="training checkpoint (.ckpt) to export")
    p.add_argument(
        "--format",
        choices=["torchscript", "onnx", "weights"],  # sa4depth.apps.export.FORMATS, without importing torch
        default="torchscript",
        help="torchscript; onnx (needs the 'export' extra); or weights: the depth net's weights and "
        "config alone, for predict and pointcloud, about a quarter of a checkpoint (default: %(default)s)",
    )
    p.add_argument(
        "--output", required=True, help="output file, e.g. depth.pt, depth.onnx or depth_weights.pt"
    )
    p.add_argument(
        "--kind",
        choices=["depth", "disparity"],
        default="depth",
        help="what a torchscript/onnx model returns (default: %(default)s)",
    )
    p.add_argument("--height", type=int, help="trace height (default: the training resolution)")
    p.add_argument("--width", type=int, help="trace width (default: the training resolution)")
    p.set_defaults(func=_run_export)


def _run_export(args) -> None:
    from sa4depth.apps.export import export_model

    result = export_model(
        args.checkpoint,
        args.output,
        format=args.format,
        output=args.kind,
        height=args.height,
        width=args.width,
    )
    print(
        f"{args.format} model written to {args.output} ({result['num_parameters']:,} parameters); "
        f"max abs diff to PyTorch {result['max_abs_diff']:.2e}"
    )


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page about a training run")
    p.add_argument(
        "run_dir",
        help="a run's output folder (with checkpoints/, tensorboard/, config.yaml), or a folder of runs "
        "such as a demo's output",
    )
    p.add_argument("--output", help="HTML file (default: RUN_DIR/report.html)")
    p.add_argument(
        "--samples",
        type=int,
        default=4,
        help="test frames in the depth figure (0: none; default: %(default)s)",
    )
    p.set_defaults(func=_run_report)


def _run_report(args) -> None:
    from sa4depth.apps.report import write_report

    print(f"report written to {write_report(args.run_dir, args.output, samples=args.samples)}")


def _add_pointcloud(sub) -> None:
    p = sub.add_parser("pointcloud", help="coloured 3D point cloud (PLY) of one image")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="training checkpoint (.ckpt) or weights file (sa4depth export --format weights)",
    )
    p.add_argument("image", help="the image (.png/.jpg) to back-project")
    p.add_argument("--output", required=True, help="output .ply file")
    _add_scale_and_camera_options(p)
    p.add_argument(
        "--max-depth", type=float, help="drop points farther than this, in output units (default: keep all)"
    )
    p.add_argument(
        "--stride",
        type=int,
        default=1,
        help="keep every n-th pixel in each direction (default: %(default)s)",
    )
    p.add_argument("--ascii", action="store_true", help="ASCII PLY instead of binary")
    p.set_defaults(func=_run_pointcloud)


def _run_pointcloud(args) -> None:
    from sa4depth.apps.pointcloud import predict_point_cloud

    n = predict_point_cloud(
        args.checkpoint,
        args.image,
        args.output,
        fx=args.fx,
        fov=args.fov,
        scale=args.scale,
        camera_height=args.camera_height,
        max_depth=args.max_depth,
        stride=args.stride,
        binary=not args.ascii,
    )
    print(f"{n:,} points written to {args.output}")


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="the built-in default: render a world, train baseline and +SA4Depth, compare"
    )
    p.add_argument(
        "--out",
        default="runs/demo",
        help="output folder (data, runs, comparison table); default: %(default)s",
    )
    p.add_argument(
        "--steps",
        type=int,
        help="training steps per model (default: the CPU recipe's, src/sa4depth/recipes/synthetic_cpu.yaml)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: tiny data, 20 steps per model (the expected time is printed at the start)",
    )
    p.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> None:
    if args.steps is not None and args.steps < 1:
        raise InputError("--steps", f"must be at least 1 training step per model, got {args.steps}")
    from sa4depth.apps.demo import run_demo

    run_demo(args.out, steps=args.steps, quick=args.quick, seed=args.seed)


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
    no_camera = "default: a folder's own cam.txt, else a 60 degree field of view, with a warning"
    intrinsics.add_argument(
        "--cam", help=f"cam.txt with the 3x3 K of the inputs at their native resolution ({no_camera})"
    )
    intrinsics.add_argument(
        "--focal", type=float, help=f"focal length in pixels at the native resolution ({no_camera})"
    )
    intrinsics.add_argument("--fov", type=float, help=f"horizontal field of view in degrees ({no_camera})")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--stride", type=int, default=1, help="keep every N-th frame (default: %(default)s)")
    rate.add_argument(
        "--fps", type=float, help="subsample videos to this frame rate (default: keep the video's rate)"
    )
    p.add_argument(
        "--static-threshold",
        type=float,
        default=argparse.SUPPRESS,
        help="drop frames whose grey thumbnail differs from the previous kept one by less than this "
        "(mean absolute difference, intensities 0-1; default 0.005; 0 keeps every frame)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of sequences for validation (default: %(default)s)",
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=200,
        help="one input is cut into sequences of about N frames (0 = no; default: %(default)s)",
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


def _add_kitti_export_gt(sub) -> None:
    p = sub.add_parser(
        "kitti-export-gt", help="write the KITTI ground-truth depth maps of a split (gt_depths.npz)"
    )
    p.add_argument("--root", required=True, help="KITTI raw root (<date>/<date>_drive_XXXX_sync/...)")
    p.add_argument("--split", required=True, help="split file, e.g. Monodepth2's splits/eigen/test_files.txt")
    p.add_argument(
        "--output", default="gt_depths.npz", help="output .npz, written atomically (default: %(default)s)"
    )
    p.add_argument(
        "--source",
        choices=["velodyne", "proj_depth", "improved"],
        default="velodyne",
        help="velodyne: Eigen projection of raw scans; proj_depth: pre-projected; improved: benchmark maps "
        "(default: %(default)s)",
    )
    p.set_defaults(func=_run_kitti_export_gt)


def _run_kitti_export_gt(args) -> None:
    from sa4depth.eval.kitti_tools import export_gt_depths

    n = export_gt_depths(args.root, args.split, args.output, source=args.source)
    print(f"{n} {args.source} ground-truth maps written to {args.output}")


def _add_evaluate_kitti(sub) -> None:
    p = sub.add_parser(
        "evaluate-kitti",
        help="KITTI Eigen depth evaluation at full GT resolution of a checkpoint or of saved predictions",
        description="Score a checkpoint's depth network (--checkpoint --root --split --gt) or any saved "
        "predictions, N maps in the split's order as Monodepth2's --ext_disp_to_eval (--predictions --gt).",
    )
    mode = "no default: give --checkpoint or --predictions"
    p.add_argument(
        "--checkpoint", help=f"training checkpoint (.ckpt) to evaluate (needs --root, --split; {mode})"
    )
    p.add_argument("--root", help="with --checkpoint: KITTI raw root; no default")
    p.add_argument("--split", help="with --checkpoint: test split file (eigen test_files.txt); no default")
    p.add_argument("--predictions", help=f"a .npy of N maps (N, h, w) at the network's resolution ({mode})")
    p.add_argument(
        "--pred-kind",
        choices=["disparity", "depth"],
        help="with --predictions: what the maps hold; disparity as Monodepth2 saves it (default disparity)",
    )
    p.add_argument("--gt", required=True, help="gt_depths.npz from `sa4depth kitti-export-gt`")
    p.add_argument(
        "--protocol",
        default="kitti_eigen",
        help="kitti_eigen, kitti_improved or kitti_improved_md2 (default: %(default)s)",
    )
    p.add_argument("--output", default="metrics.json", help="metrics JSON file (default: %(default)s)")
    p.set_defaults(func=_run_evaluate_kitti)


def _run_evaluate_kitti(args) -> None:
    from sa4depth.eval.kitti_tools import evaluate_depth_predictions, evaluate_kitti_depth

    if (args.checkpoint is None) == (args.predictions is None):
        raise InputError(
            "evaluate-kitti",
            "give either --checkpoint (with --root, --split) or --predictions (with --gt)"
            if args.checkpoint is None
            else "--checkpoint and --predictions exclude each other",
        )
    mode, other = ("--checkpoint", "--predictions") if args.checkpoint else ("--predictions", "--checkpoint")
    needed = ("--root", "--split") if args.checkpoint else ()
    foreign = ("--pred-kind",) if args.checkpoint else ("--root", "--split")
    given = {"--root": args.root, "--split": args.split, "--pred-kind": args.pred_kind}
    for option in needed:
        if given[option] is None:
            raise InputError(option, f"required with {mode}")
    for option in foreign:
        if given[option] is not None:
            raise InputError(option, f"only with {other}, not with {mode}")
    if args.checkpoint:
        results = evaluate_kitti_depth(
            args.checkpoint, args.root, args.split, args.gt, out_json=args.output, protocol=args.protocol
        )
    else:
        results = evaluate_depth_predictions(
            args.predictions, args.gt, args.output, args.protocol, args.pred_kind or "disparity"
        )
    print(json.dumps(results.get("depth", results), indent=2, default=float))
    print(f"metrics written to {args.output}")


def _add_evaluate_odometry(sub) -> None:
    p = sub.add_parser(
        "evaluate-odometry",
        help="KITTI odometry errors (t_err, r_err, ATE, RPE) of a checkpoint's pose net or a trajectory file",
        description="Score a checkpoint's pose network (--checkpoint --root [--sequence]) or any KITTI "
        "trajectory file, 12 numbers a line or 13 with a leading frame index (--trajectory --gt).",
    )
    mode = "no default: give --checkpoint or --trajectory"
    p.add_argument(
        "--checkpoint", help=f"a training checkpoint: evaluate its pose network (needs --root; {mode})"
    )
    p.add_argument(
        "--root",
        help="with --checkpoint: KITTI odometry 'dataset' folder (sequences/, poses/); no default",
    )
    p.add_argument("--sequence", help="with --checkpoint: a sequence with ground truth (00-10; default 09)")
    p.add_argument("--trajectory", help=f"a KITTI pose file to score (needs --gt; {mode})")
    p.add_argument(
        "--gt", help="with --trajectory: the ground-truth poses, e.g. dataset/poses/09.txt; no default"
    )
    p.add_argument(
        "--output",
        required=True,
        help="output folder: metrics JSON and trajectory PNG (with --checkpoint also the predicted poses)",
    )
    p.add_argument(
        "--alignment",
        choices=["7dof", "6dof", "scale", "none"],
        default="7dof",
        help="alignment of the prediction to the ground truth before scoring: 7dof (rotation, "
        "translation, scale: monocular), 6dof (no scale), scale (only), none (default: %(default)s)",
    )
    p.add_argument(
        "--angle",
        choices=["ours", "devkit"],
        default="ours",
        help="rotation angle of r_err and RPE: atan2 (ours, default) or the devkit's arccos of the trace",
    )
    p.add_argument("--refine", action="store_true", help="with --checkpoint: refine each pose with the LM")
    p.add_argument("--batch-size", type=int, help="with --checkpoint: images per pose-net call (default 8)")
    p.set_defaults(func=_run_evaluate_odometry)


def _odometry_mode(args) -> str:
    """The mode the options select, "checkpoint" or "trajectory"; an option of the other mode is an error."""
    if (args.checkpoint is None) == (args.trajectory is None):
        raise InputError(
            "evaluate-odometry",
            "give either --checkpoint (with --root) or --trajectory (with --gt)"
            if args.checkpoint is None
            else "--checkpoint and --trajectory exclude each other",
        )
    mode, needed = ("checkpoint", "--root") if args.checkpoint else ("trajectory", "--gt")
    given = {
        "--root": args.root is not None,
        "--sequence": args.sequence is not None,
        "--refine": args.refine,
        "--batch-size": args.batch_size is not None,
        "--gt": args.gt is not None,
    }
    if not given[needed]:
        raise InputError(needed, f"required with --{mode}")
    foreign = ("--gt",) if mode == "checkpoint" else ("--root", "--sequence", "--refine", "--batch-size")
    for option in foreign:
        if given[option]:
            other = "--trajectory" if mode == "checkpoint" else "--checkpoint"
            raise InputError(option, f"only with {other}, not with --{mode}")
    return mode


def _run_evaluate_odometry(args) -> None:
    from sa4depth.eval import kitti_tools

    if _odometry_mode(args) == "trajectory":
        k = kitti_tools.evaluate_trajectory_file(
            args.trajectory, args.gt, args.output, alignment=args.alignment, angle=args.angle
        )
        missing = f", {k['missing_frames']} GT frames without prediction" if k["missing_frames"] else ""
        print(
            f"{args.trajectory} ({k['alignment']}, angle {k['angle']}{missing}): t_err {k['t_err']:.2f} %, "
            f"r_err {k['r_err']:.2f} deg/100m, ATE {k['ate']:.3f} m, RPE {k['rpe_trans']:.3f} m "
            f"{k['rpe_rot']:.3f} deg ({k['n_segments']} segments)"
        )
        print(f"results in {Path(args.output) / 'metrics.json'}")
        return
    from sa4depth.apps.odometry import evaluate_odometry

    r = evaluate_odometry(
        args.checkpoint,
        args.root,
        args.sequence or "09",
        args.output,
        alignment=args.alignment,
        refine=args.refine,
        batch_size=args.batch_size or 8,
        angle=args.angle,
    )
    k, a = r["kitti"], r["ate_5frame"]
    print(
        f"sequence {r['sequence']} ({r['alignment']}): t_err {k['t_err']:.2f} %, r_err {k['r_err']:.2f} "
        f"deg/100m, ATE {k['ate']:.3f} m, 5-frame ATE {a['mean']:.4f} +- {a['std']:.4f}"
    )
    print(f"results in {args.output}")


def _add_bench(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="speed and memory benchmarks: train, inference, memory, data, scaling, profile",
        add_help=False,
    )
    p.set_defaults(
        func=_run_bench
    )  # its own options are parsed by sa4depth.apps.bench (see `sa4depth bench --help`)


def _run_bench(args) -> None:
    from sa4depth.apps import bench

    result = bench.main(args.bench_args)
    shown = {k: v for k, v in result.items() if k not in ("machine_before", "machine_after")}
    print(json.dumps(shown, indent=2, default=float)[:4000])


def build_parser() -> argparse.ArgumentParser:
    """Build the ``sa4depth`` parser with one subcommand per application (demo, train, predict, ...).

    Returns:
        The parser; each subcommand's namespace carries the function to run as ``func``.
    """
    parser = argparse.ArgumentParser(
        prog="sa4depth", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (default: warnings only)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (
        _add_demo,
        _add_synth,
        _add_prepare,
        _add_train,
        _add_evaluate,
        _add_predict,
        _add_export,
        _add_pointcloud,
        _add_report,
        _add_bench,
        _add_kitti_export_gt,
        _add_evaluate_kitti,
        _add_evaluate_odometry,
    ):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sa4depth`` command: parse ``argv`` and run the chosen subcommand.

    Arguments the top-level parser does not know go unparsed to `sa4depth.apps.bench` for ``bench``; for
    a command that takes config overrides they are appended to its overrides when every one is a
    ``key=value``; anything else is a usage error. An `InputError` is printed as one ``error:`` line
    instead of a traceback.

    Args:
        argv: command-line arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success (or when only the help was printed), 2 for an `InputError`, 130
        when interrupted.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "func", None) is _run_bench:
        args.bench_args = extra
    elif extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        # key=value overrides after an option (`train --config C a=1 --resume b=2`): argparse gives the
        # positional list only the first run; the later ones are overrides too, in the order given.
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    # Lightning prints through its own handler; propagating too would print every line twice.
    logging.getLogger("lightning.pytorch").propagate = False
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
