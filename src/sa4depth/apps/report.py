"""One self-contained HTML page about a training run, or comparing the runs in a folder.

The page shows metrics, depth images, plots, config and versions; a folder of several runs is, for
example, a demo's output.

Every image is inlined as a base64 data URI, so the single file can be mailed or archived as it is. Runs
of one page share its sections: each result is listed once, the training curves of all runs are overlaid
in one panel per metric, and their configs are shown with the keys that differ.
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

import yaml

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
RUN_MARKERS = ("checkpoints", "tensorboard", "config.yaml")
"""What a training run writes into its folder (`sa4depth.train.run.RUN_ENTRIES`): any one marks a run."""

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
    """Encode file contents as a base64 ``data:`` URI, for inlining an image into the page.

    Args:
        data: the file's bytes.
        mime: its media type, e.g. "image/png" or "image/jpeg".

    Returns:
        The URI ``data:<mime>;base64,<data>``.

    Example:
        >>> data_uri(b"abc")
        'data:image/png;base64,YWJj'
    """
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
    """Evaluation results in the folder's JSON files: name -> result, and notes on files skipped or copies.

    A file is one result (named after its path) or a comparison ``{name: result, ...}`` (demo output).
    Each distinct result is listed once: a demo writes every variant's result into ``comparison.json``
    and into its run's ``metrics_test.json``, and the comparison's name (``comparison: monodepth2``) is
    the one kept.
    """
    found: list[tuple[str, dict, bool]] = []  # (name, result, from a comparison file)
    notes = []
    for path in _files(run_dir, (".json",)):
        rel = path.relative_to(run_dir)
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
            notes.append(f"{rel}: skipped, not valid JSON ({e.__class__.__name__})")
            continue
        if is_result(data):
            found.append((str(rel.with_suffix("")), data, False))
        elif isinstance(data, Mapping) and data and all(is_result(v) for v in data.values()):
            found += [(f"{rel.with_suffix('')}: {k}", v, True) for k, v in data.items()]
    copies: dict[str, list[tuple[str, dict, bool]]] = {}
    for entry in found:
        copies.setdefault(json.dumps(entry[1], sort_keys=True), []).append(entry)
    results = {}
    for group in copies.values():
        name, result, _ = next((e for e in group if e[2]), group[0])
        results[name] = result
        notes += [f"{other}: the same results as {name}, listed once" for other, *_ in group if other != name]
    return results, notes


def is_run(folder: Path) -> bool:
    """Whether ``folder`` holds a training run (one of `RUN_MARKERS`)."""
    return any((folder / name).exists() for name in RUN_MARKERS)


def find_runs(folder: Path) -> dict[str, Path]:
    """The training runs of a report: name -> folder.

    ``folder`` itself (named after it) if it is a run, else every run below it (not inside another run,
    a hidden folder or `SKIP_DIRS`), named by its path relative to ``folder``; empty if there is none.
    """
    if is_run(folder):
        return {folder.resolve().name: folder}
    runs = {}
    for parent, dirs, _ in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        for d in list(dirs):
            if is_run(Path(parent) / d):
                runs[(Path(parent) / d).relative_to(folder).as_posix()] = Path(parent) / d
                dirs.remove(d)  # a run's own sub-folders hold no further runs
    return dict(sorted(runs.items()))


def _is_dataset(folder: Path) -> bool:
    """Whether ``folder`` is a dataset root (`sa4depth.data.layout`: ``sequences/`` and ``splits/``)."""
    return (folder / "sequences").is_dir() and (folder / "splits").is_dir()


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """List the files below ``folder`` whose names end in one of ``suffixes``, sorted.

    Hidden files and folders, `SKIP_DIRS` and dataset roots are left out (a demo renders its world into
    its output folder: thousands of frames that are no result).

    Args:
        folder: the folder to walk.
        suffixes: lower-case name endings such as ``(".png", ".jpg")``; matched case-insensitively.

    Returns:
        The matching paths, sorted.
    """
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [
            d
            for d in dirs
            if not d.startswith(".") and d not in SKIP_DIRS and not _is_dataset(Path(parent) / d)
        ]
        found += [Path(parent) / f for f in files if not f.startswith(".") and f.lower().endswith(suffixes)]
    return sorted(found)


def find_checkpoint(run_dir: Path) -> Path | None:
    """Find the checkpoint a report of ``run_dir`` should use: ``checkpoints/best.ckpt``, else ``last.ckpt``.

    Args:
        run_dir: a training run's output folder.

    Returns:
        The checkpoint's path, or None when the run has neither.
    """
    for name in ("best.ckpt", "last.ckpt"):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    return None


def find_images(run_dir: Path, exclude: set[Path]) -> list[Path]:
    """List the run's PNG and JPEG images (depth maps, demo figures) for the report.

    The logger, checkpoint and dataset folders are not searched (`_files`), and files larger than
    `MAX_IMAGE_BYTES` are left out, as they would bloat the page.

    Args:
        run_dir: the run's output folder.
        exclude: paths to leave out, e.g. the report being written.

    Returns:
        The image paths, sorted.
    """
    images = _files(run_dir, (".png", ".jpg", ".jpeg"))
    return [p for p in images if p not in exclude and p.stat().st_size <= MAX_IMAGE_BYTES]


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
    from sa4depth.apps.demo import flat_summary

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


def _curves_part(runs: dict[str, Path], notes: list[str]) -> str:
    """Every run's TensorBoard curves overlaid, one panel per metric; constant series only named."""
    from sa4depth.apps import visualize

    logged = {name: d for name, d in runs.items() if visualize.event_dirs(d)}
    if not logged:
        notes.append("training curves skipped: no TensorBoard event files under tensorboard/")
        return ""
    if len(logged) < len(runs):
        notes.append(f"no TensorBoard event files in {', '.join(sorted(runs.keys() - logged.keys()))}")

    def draw() -> str:
        scalars = {name: visualize.load_scalars(d) for name, d in logged.items()}
        constant = visualize.constant_tags(scalars)
        constant = {t: v for t, v in constant.items() if t not in visualize.BOOKKEEPING_TAGS}
        if constant:
            values = ", ".join(f"{tag} = {value:g}" for tag, value in sorted(constant.items()))
            notes.append(f"constant in every run, so not plotted: {values}")
        caption = "Training curves (TensorBoard)"
        if len(logged) > 1:
            caption = f"Training curves of {len(logged)} runs overlaid (TensorBoard): {', '.join(logged)}"
        return _figure(visualize.plot_scalars(scalars), caption)

    return _attempt("training curves", draw, notes)


def _plots_section(runs: dict[str, Path], results: dict[str, dict], samples: int) -> str:
    from sa4depth.apps import visualize

    notes: list[str] = []
    parts = [_curves_part(runs, notes)]
    for name, result in results.items():
        if visualize.has_scale_data(result):
            png = visualize.plot_scale_factors(result, title=name)
            parts.append(_figure(png, f"Per-sequence scale factors, {name}"))
    checkpoints = {name: find_checkpoint(d) for name, d in runs.items()}
    without = [name for name, c in checkpoints.items() if c is None]
    if without:
        which = f" for {', '.join(without)}" if len(runs) > 1 else ""
        notes.append(f"depth samples and trajectory skipped{which}: no checkpoints/best.ckpt or last.ckpt")
    found = {name: c for name, c in checkpoints.items() if c is not None}
    if found:
        parts.extend(_checkpoint_figures(found, samples, notes, multi=len(runs) > 1))
    return _section("Plots", "".join(parts) + "".join(map(_note, notes)))


def _checkpoint_figures(
    checkpoints: dict[str, Path], samples: int, notes: list[str], multi: bool
) -> list[str]:
    """Depth on test frames (all runs' models side by side, per dataset) and each run's trajectory."""
    from sa4depth.apps.visualize import plot_trajectories, sequence_trajectory
    from sa4depth.train.run import load_checkpoint

    loaded = {}
    for name, checkpoint in checkpoints.items():
        try:
            loaded[name] = load_checkpoint(checkpoint)
        except InputError as e:
            notes.append(f"depth samples and trajectory skipped: {e}")
    # Models of one dataset and resolution share a figure, so their depth is compared on the same frames.
    groups: dict[tuple, list[str]] = {}
    for name, (_, cfg) in loaded.items():
        d = cfg.data
        groups.setdefault((d.dataset, d.root, d.test_split, d.height, d.width), []).append(name)
    parts = []
    with tempfile.TemporaryDirectory() as tmp:

        def depth_samples(names: list[str]) -> str:
            from sa4depth.apps.demo import depth_figure
            from sa4depth.data.datamodule import build_dataset

            cfg = loaded[names[0]][1]
            dataset = build_dataset(cfg.data, cfg.data.test_split, train=False)
            out = Path(tmp) / "depth.png"
            label = {n: n if multi else checkpoints[n].name for n in names}
            models = {label[n]: loaded[n][0].model for n in names}
            depth_figure(models, dataset, out, n=min(samples, len(dataset)))
            which = ", ".join(f"{n}: {checkpoints[n].name}" for n in names) if multi else label[names[0]]
            caption = f"Test frames: image, ground truth, prediction ({which}; {cfg.data.root})"
            return _figure(out.read_bytes(), caption)

        def trajectory(name: str) -> str:
            system, cfg = loaded[name]
            sequence, gt, pred = sequence_trajectory(system.model, cfg)
            out = Path(tmp) / "trajectory.png"
            info = plot_trajectories(gt, pred, out, title=f"{name}: {sequence}" if multi else sequence)
            of = f" of {name}" if multi else ""
            caption = (
                f"Pose-network trajectory{of}, test sequence {sequence}, 7-DoF aligned "
                f"(scale {info['scale']:.3g})"
            )
            return _figure(out.read_bytes(), caption)

        if samples > 0:
            for names in groups.values():
                parts.append(_attempt("depth samples", lambda names=names: depth_samples(names), notes))
        for name in loaded:
            parts.append(
                _attempt(f"trajectory{' of ' + name if multi else ''}", lambda n=name: trajectory(n), notes)
            )
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


def _flat(config, prefix: str = "") -> dict[str, object]:
    """A nested config as ``{"data.root": ..., ...}``."""
    if not isinstance(config, Mapping):
        return {prefix: config}
    flat = {}
    for key, value in config.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _differences(configs: dict[str, dict[str, object]]) -> str:
    """A table of the keys whose values differ between the runs' flattened configs (one column per run)."""
    unset = "(not set)"
    keys = sorted({k for flat in configs.values() for k in flat})
    differ = [k for k in keys if len({repr(flat.get(k, unset)) for flat in configs.values()}) > 1]
    if not differ:
        return _note("the runs' configs are identical")
    head = "".join(f"<th>{_esc(c)}</th>" for c in ["key", *configs])
    rows = "".join(
        f"<tr><td>{_esc(k)}</td>"
        + "".join(f"<td>{_esc(f.get(k, unset))}</td>" for f in configs.values())
        + "</tr>"
        for k in differ
    )
    table = f'<table class="config"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    return "<h3>Keys that differ</h3>" + table


def _config_section(runs: dict[str, Path], multi: bool) -> str:
    """Each run's ``config.yaml``; for several runs first the keys whose values differ (`_differences`)."""
    texts = {n: (d / "config.yaml").read_text() for n, d in runs.items() if (d / "config.yaml").is_file()}
    if not multi:
        if not texts:
            return _section("Config", _note("no config.yaml in the run folder"))
        return _section("Config", f"<pre>{_esc(next(iter(texts.values())))}</pre>")
    notes = [_note(f"{name}: no config.yaml") for name in runs if name not in texts]
    configs = {}
    for name, text in texts.items():
        try:
            configs[name] = _flat(yaml.safe_load(text))
        except yaml.YAMLError as e:
            notes.append(_note(f"{name}/config.yaml: not valid YAML ({str(e).splitlines()[0]})"))
    table = _differences(configs) if len(configs) > 1 else ""
    full = "".join(
        f"<details><summary>{_esc(name)}/config.yaml</summary><pre>{_esc(text)}</pre></details>"
        for name, text in texts.items()
    )
    return _section("Config", table + "".join(notes) + full)


def _versions_section() -> str:
    rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in versions().items())
    return _section("Versions", f'<table class="versions"><tbody>{rows}</tbody></table>')


# ----------------------------------------------------------------------------------------------- main


def write_report(
    run_dir: str | os.PathLike, out_html: str | os.PathLike | None = None, samples: int = 4
) -> Path:
    """Write one self-contained HTML report of a training run or of the runs in a folder.

    ``run_dir`` is a run (it holds ``checkpoints/``, ``tensorboard/`` or ``config.yaml``) or a folder of
    runs such as a demo's output (`find_runs`); then the page compares them. Contents: metrics tables from
    every evaluation JSON in the folder (`sa4depth evaluate` output or a demo ``comparison.json``; each
    result once); plots (training curves from ``tensorboard/``, every run's overlaid in one panel per
    metric, constant series left out; per-sequence scale factors; and, when a checkpoint and its dataset
    are available, predicted depth on test frames, every run's model side by side, and the pose network's
    trajectory against the ground truth); the PNG/JPEG images; each run's ``config.yaml`` (with the keys
    that differ between runs); and the software versions. Parts whose inputs are missing are replaced by
    a note saying why.

    Args:
        run_dir: a run's output folder (``output_dir`` of its config) or a folder of runs.
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
    runs = find_runs(run_dir) or {run_dir.resolve().name: run_dir}
    multi = len(runs) > 1
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"sa4depth report: {run_dir.resolve().name}" + (f" ({len(runs)} runs)" if multi else "")
    checkpoints = {name: find_checkpoint(d) for name, d in runs.items()}
    if multi:
        listed = ", ".join(
            f"<code>{_esc(name)}</code> (checkpoint {_esc(c.name if c else 'none')})"
            for name, c in checkpoints.items()
        )
        where = f"Folder <code>{_esc(run_dir.resolve())}</code> with {len(runs)} runs: {listed}"
    else:
        (checkpoint,) = checkpoints.values()
        where = (
            f"Run folder <code>{_esc(run_dir.resolve())}</code>; "
            f"checkpoint <code>{_esc(checkpoint.name if checkpoint else 'none')}</code>"
        )
    header = f"<h1>{_esc(title)}</h1><p>{where}; generated {_esc(now)}.</p>"
    body = "".join(
        [
            header,
            _metrics_section(results, notes),
            _plots_section(runs, results, samples),
            _images_section(run_dir, out_html),
            _config_section(runs, multi),
            _versions_section(),
        ]
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>\n"
    )
    atomic_write_text(out_html, page)
    return out_html
