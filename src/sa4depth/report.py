"""One self-contained HTML page about a training run: metrics, depth images, plots, config and versions.

Every image is inlined as a base64 data URI, so the single file can be mailed or archived as it is.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import logging
import os
import platform
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from sa4depth.data.layout import atomic_write_text
from sa4depth.errors import InputError

logger = logging.getLogger(__name__)

HEADLINE = ["abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "seq_scale_std", "within_seq_cv"]
DEPTH = ["abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "scale_mean", "scale_std", "count"]
EXTRA_TITLES = {
    "pose_depth_ratio": "pose/depth scale",
    "ate_5frame": "ATE 5-frame",
    "count": "images",
}
MAX_IMAGES = 12
MAX_IMAGE_BYTES = 5_000_000
SKIP_DIRS = {"tensorboard", "checkpoints", "lightning_logs"}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
figure { margin: 1em 0; } figcaption { font-size: .85em; color: #555; }
img { max-width: 100%; border: 1px solid #ddd; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
.note { color: #8a5a00; font-size: .9em; }
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return _esc(value)


def html_table(rows: Mapping[str, Mapping[str, object]], columns: list[str]) -> str:
    """An HTML table: one row per name, one column per metric key (missing values as "-")."""
    from sa4depth.eval.report_table import COLUMN_TITLES

    titles = {**COLUMN_TITLES, **EXTRA_TITLES}
    head = "".join(f"<th>{_esc(titles.get(c, c))}</th>" for c in ["name", *columns])
    body = "".join(
        f"<tr><td>{_esc(name)}</td>" + "".join(f"<td>{_cell(m.get(c))}</td>" for c in columns) + "</tr>"
        for name, m in rows.items()
    )
    return f'<table class="metrics"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _figure(data: bytes, caption: str, mime: str = "image/png") -> str:
    return (
        f'<figure><img alt="{_esc(caption)}" src="{data_uri(data, mime)}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


# ---------------------------------------------------------------------------------------- collecting


def is_result(value) -> bool:
    """Whether ``value`` looks like an `sa4depth.eval.evaluate.evaluate_model` result."""
    return isinstance(value, Mapping) and isinstance(value.get("depth"), Mapping)


def find_results(run_dir: Path) -> tuple[dict[str, dict], list[str]]:
    """Evaluation results in the run's JSON files: name -> result, and notes on files that were skipped.

    A file is one result (named after its path) or a comparison ``{name: result, ...}`` (demo output).
    """
    results: dict[str, dict] = {}
    notes = []
    for path in sorted(run_dir.rglob("*.json")):
        rel = path.relative_to(run_dir)
        if set(rel.parts[:-1]) & SKIP_DIRS or any(p.startswith(".") for p in rel.parts):
            continue
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
            notes.append(f"{rel}: skipped, not valid JSON ({e.__class__.__name__})")
            continue
        if is_result(data):
            results[str(rel.with_suffix(""))] = data
        elif isinstance(data, Mapping) and data and all(is_result(v) for v in data.values()):
            results.update({f"{rel.with_suffix('')}: {k}": v for k, v in data.items()})
    return results, notes


def find_checkpoint(run_dir: Path) -> Path | None:
    for name in ("best.ckpt", "last.ckpt"):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    return None


def find_images(run_dir: Path, exclude: set[Path]) -> list[Path]:
    """PNG/JPEG files of the run (depth maps, demo figures), outside the logger and checkpoint folders."""
    found = []
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg") or path in exclude:
            continue
        if set(rel.parts[:-1]) & SKIP_DIRS or any(p.startswith(".") for p in rel.parts):
            continue
        if path.stat().st_size <= MAX_IMAGE_BYTES:
            found.append(path)
    return found


def versions() -> dict[str, str]:
    """Python, platform and the versions of the packages that shape results."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("sa4depth", "torch", "lightning", "kornia", "numpy", "opencv-python-headless", "matplotlib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# ------------------------------------------------------------------------------------------- sections


def _section(title: str, body: str) -> str:
    anchor = title.lower().replace(" ", "-")
    return f'<section id="{_esc(anchor)}"><h2>{_esc(title)}</h2>{body}</section>'


def _metrics_section(results: dict[str, dict], notes: list[str]) -> str:
    from sa4depth.demo import flat_summary

    if not results:
        body = _note(
            "No metrics JSON found in the run folder; run "
            "`sa4depth evaluate --checkpoint <run>/checkpoints/best.ckpt --output <run>/metrics.json`."
        )
        return _section("Metrics", body + "".join(map(_note, notes)))
    headline = {name: flat_summary(r) for name, r in results.items()}
    columns = HEADLINE + [
        c for c in ("pose_depth_ratio", "ate_5frame") if any(h.get(c) for h in headline.values())
    ]
    depth = {name: r["depth"] for name, r in results.items()}
    body = (
        "<h3>Headline</h3>"
        + html_table(headline, columns)
        + "<h3>Depth (per-image median scaling)</h3>"
        + html_table(depth, DEPTH)
        + "".join(
            _note(f"{name}: split {r.get('split', '?')}, protocol {r.get('protocol', '?')}")
            for name, r in results.items()
        )
        + "".join(map(_note, notes))
    )
    return _section("Metrics", body)


def _attempt(label: str, make: Callable[[], str], notes: list[str]) -> str:
    """Run one optional part of the report; a missing input becomes a note, not a failed report."""
    try:
        return make()
    except InputError as e:
        notes.append(f"{label} skipped: {e}")
        logger.info("%s skipped: %s", label, e)
        return ""


def _plots_section(run_dir: Path, results: dict[str, dict], checkpoint: Path | None, samples: int) -> str:
    from sa4depth import visualize

    notes: list[str] = []
    parts = []
    if visualize.event_dirs(run_dir):
        parts.append(
            _attempt(
                "training curves",
                lambda: _figure(visualize.plot_training_curves(run_dir), "Training curves (TensorBoard)"),
                notes,
            )
        )
    else:
        notes.append("training curves skipped: no TensorBoard event files under tensorboard/")
    for name, result in results.items():
        if visualize.has_scale_data(result):
            png = visualize.plot_scale_factors(result, title=name)
            parts.append(_figure(png, f"Per-sequence scale factors, {name}"))
    if checkpoint is None:
        notes.append("depth samples and trajectory skipped: no checkpoints/best.ckpt or last.ckpt")
    else:
        parts.extend(_checkpoint_figures(checkpoint, samples, notes))
    return _section("Plots", "".join(parts) + "".join(map(_note, notes)))


def _checkpoint_figures(checkpoint: Path, samples: int, notes: list[str]) -> list[str]:
    from sa4depth.train.run import load_checkpoint
    from sa4depth.visualize import plot_trajectories, sequence_trajectory

    try:
        system, cfg = load_checkpoint(checkpoint)
    except InputError as e:
        notes.append(f"depth samples and trajectory skipped: {e}")
        return []
    parts = []
    with tempfile.TemporaryDirectory() as tmp:

        def depth_samples() -> str:
            from sa4depth.data.datamodule import build_dataset
            from sa4depth.demo import depth_figure

            dataset = build_dataset(cfg.data, cfg.data.test_split, train=False)
            out = Path(tmp) / "depth.png"
            depth_figure({checkpoint.name: system.model}, dataset, out, n=min(samples, len(dataset)))
            caption = f"Test frames: image, ground truth, prediction ({checkpoint.name}, {cfg.data.root})"
            return _figure(out.read_bytes(), caption)

        def trajectory() -> str:
            name, gt, pred = sequence_trajectory(system.model, cfg)
            out = Path(tmp) / "trajectory.png"
            info = plot_trajectories(gt, pred, out, title=name)
            caption = (
                f"Pose-network trajectory of test sequence {name}, 7-DoF aligned (scale {info['scale']:.3g})"
            )
            return _figure(out.read_bytes(), caption)

        if samples > 0:
            parts.append(_attempt("depth samples", depth_samples, notes))
        parts.append(_attempt("trajectory", trajectory, notes))
    return parts


def _images_section(run_dir: Path, out_html: Path) -> str:
    images = find_images(run_dir, exclude={out_html})
    if not images:
        return _section("Images", _note("no PNG/JPEG files in the run folder"))
    parts = []
    for path in images[:MAX_IMAGES]:
        mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
        parts.append(_figure(path.read_bytes(), str(path.relative_to(run_dir)), mime))
    if len(images) > MAX_IMAGES:
        parts.append(_note(f"{len(images) - MAX_IMAGES} more images not shown"))
    return _section("Images", "".join(parts))


def _config_section(run_dir: Path) -> str:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return _section("Config", _note("no config.yaml in the run folder"))
    return _section("Config", f"<pre>{_esc(path.read_text())}</pre>")


def _versions_section() -> str:
    rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in versions().items())
    return _section("Versions", f'<table class="versions"><tbody>{rows}</tbody></table>')


# ----------------------------------------------------------------------------------------------- main


def write_report(
    run_dir: str | os.PathLike, out_html: str | os.PathLike | None = None, samples: int = 4
) -> Path:
    """Write one self-contained HTML report of a training run (default ``<run_dir>/report.html``).

    Contents: metrics tables from every evaluation JSON in the run folder (`sa4depth evaluate` output or
    a demo ``comparison.json``); plots (training curves from ``tensorboard/``, per-sequence scale factors,
    and, when a checkpoint and its dataset are available, predicted depth on test frames and the pose
    network's trajectory against the ground truth); the run's PNG/JPEG images; ``config.yaml``; and the
    software versions. Parts whose inputs are missing are replaced by a note saying why.

    Args:
        run_dir: the run's output folder (``output_dir`` of its config).
        out_html: output file, written atomically.
        samples: number of test frames in the depth figure (0 to skip it).

    Returns:
        The path of the HTML file.

    Raises:
        InputError: ``run_dir`` is not a folder.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(run_dir, "run folder not found")
    out_html = Path(out_html) if out_html is not None else run_dir / "report.html"
    results, notes = find_results(run_dir)
    checkpoint = find_checkpoint(run_dir)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"sa4depth report: {run_dir.resolve().name}"
    header = (
        f"<h1>{_esc(title)}</h1><p>Run folder <code>{_esc(run_dir.resolve())}</code>; "
        f"checkpoint <code>{_esc(checkpoint.name if checkpoint else 'none')}</code>; "
        f"generated {_esc(now)}.</p>"
    )
    body = "".join(
        [
            header,
            _metrics_section(results, notes),
            _plots_section(run_dir, results, checkpoint, samples),
            _images_section(run_dir, out_html),
            _config_section(run_dir),
            _versions_section(),
        ]
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>\n"
    )
    atomic_write_text(out_html, page)
    return out_html
