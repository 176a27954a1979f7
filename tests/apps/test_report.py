"""The HTML run report: one self-contained file with metrics, plots, config and versions, checked by parsing
it and by rendering it in a real headless browser (skipped when Chromium is not installed); a folder of
runs (a demo's output) gets one comparison page: each result once, every run's curves overlaid, no
constant series, each run's config with the keys that differ."""

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image

from sa4depth.apps.report import write_report
from sa4depth.config import load_config
from sa4depth.data import layout
from sa4depth.data.toy import toy_world
from sa4depth.errors import InputError

H, W = 64, 96


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step training run, evaluated, with an extra figure and a broken JSON file in its folder."""
    from sa4depth.eval.evaluate import evaluate_model
    from sa4depth.eval.report_table import write_metrics_json
    from sa4depth.train.run import load_checkpoint, train

    base = tmp_path_factory.mktemp("report")
    world = toy_world(base / "world", frames=5, size=(H, W))
    out = base / "run"
    overrides = [f"data.root={world}", f"data.height={H}", f"data.width={W}", "data.batch_size=2"]
    overrides += [
        f"output_dir={out}",
        "trainer.max_steps=2",
        "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=1",  # two validations: val/count and val/n_skipped are flat lines
        "trainer.accelerator=cpu",
    ]
    train(load_config(None, overrides), enable_progress_bar=False)
    system, cfg = load_checkpoint(out / "checkpoints" / "last.ckpt")
    results = evaluate_model(system.model, cfg, split="test")
    results["scales_by_sequence"] = {"a": [1.0, 1.1, 1.05], "b": [2.0, 1.9, 2.1]}
    write_metrics_json(out / "metrics.json", results)
    (out / "broken.json").write_text("{")
    layout.write_image(out / "figures" / "extra.png", np.full((20, 30, 3), 200, np.uint8))
    return out, results


@pytest.fixture(scope="module")
def report(run):
    out, results = run
    return write_report(out, samples=2), results


class Page(HTMLParser):
    """Collects table cells, image sources, links and the text of <pre> blocks."""

    def __init__(self):
        super().__init__()
        self.cells, self.images, self.urls, self.pre, self._cell, self._pre = [], [], [], [], None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("td", "th"):
            self._cell = ""
        if tag == "img":
            self.images.append(attrs["src"])
        self.urls += [v for k, v in attrs.items() if k in ("href", "src") and v and not v.startswith("data:")]
        self._pre = self._pre or tag == "pre"

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.cells.append(self._cell)
            self._cell = None
        if tag == "pre":
            self._pre = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._pre:
            self.pre.append(data)


def test_report_is_one_self_contained_file_with_everything(run, report):
    path, results = report
    assert path == run[0] / "report.html"
    page = Page()
    page.feed(path.read_text())
    assert page.urls == []  # nothing outside the file
    assert f"{results['depth']['abs_rel']:.4f}" in page.cells and "AbsRel" in page.cells
    assert str(results["depth"]["count"]) in page.cells
    assert torch.__version__ in page.cells and "lightning" in page.cells and "kornia" in page.cells
    # training curves, per-frame scale factors, depth samples, trajectory, figures/extra.png
    assert len(page.images) == 5
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.size[0] >= 30
    assert "max_steps: 2" in "".join(page.pre)
    text = path.read_text()
    assert "broken.json: skipped, not valid JSON" in text
    constant = text.split("constant in every run, so not plotted: ", 1)[1].split("<", 1)[0]
    assert "val/count = 6" in constant and "val/n_skipped = 0" in constant  # 6 validation frames
    assert "epoch" not in constant  # bookkeeping is never plotted, so not worth a word


def test_report_of_an_empty_folder_explains_what_is_missing(tmp_path):
    path = write_report(tmp_path, tmp_path / "r" / "out.html", samples=0)
    text = path.read_text()
    assert (
        "No metrics JSON found" in text and "no config.yaml" in text and "no TensorBoard event files" in text
    )
    with pytest.raises(InputError, match="run folder not found"):
        write_report(tmp_path / "missing")


def train_run(out, world, *extra):
    from sa4depth.eval.evaluate import evaluate_model
    from sa4depth.eval.report_table import write_metrics_json
    from sa4depth.train.run import load_checkpoint, train

    overrides = [f"data.root={world}", f"data.height={H}", f"data.width={W}", "data.batch_size=2"]
    overrides += [f"output_dir={out}", "trainer.max_steps=2", "trainer.log_every_n_steps=1"]
    overrides += ["trainer.val_check_interval=1", "trainer.accelerator=cpu", *extra]
    train(load_config(None, overrides), enable_progress_bar=False)
    system, cfg = load_checkpoint(out / "checkpoints" / "last.ckpt")
    write_metrics_json(out / "metrics_test.json", evaluate_model(system.model, cfg, split="test"))
    return json.loads((out / "metrics_test.json").read_text())


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    """A demo's output: two runs under runs/, each with its metrics, and comparison.json of both."""
    from sa4depth.eval.report_table import write_metrics_json

    base = tmp_path_factory.mktemp("demo")
    world = toy_world(base / "data", frames=5, size=(H, W))
    results = {
        name: train_run(base / "runs" / name, world, f"trainer.seed={seed}") for seed, name in enumerate("ab")
    }
    write_metrics_json(base / "comparison.json", results)
    layout.write_image(base / "depth_comparison.png", np.full((20, 30, 3), 100, np.uint8))
    return base, results


def headline_rows(html: str) -> list[str]:
    """The first cells of the headline table's body rows: the result names."""
    table = html.split("<h3>Headline</h3>", 1)[1].split("</table>", 1)[0]
    return [row.split("</td>", 1)[0] for row in table.split("<tr><td>")[1:]]


def test_a_folder_of_runs_is_one_comparison_page(demo_folder):
    base, results = demo_folder
    path = write_report(base, samples=2)
    text = path.read_text()
    page = Page()
    page.feed(text)
    # Each result once, under the comparison's name; its copy in the run folder is only mentioned.
    assert headline_rows(text) == ["comparison: a", "comparison: b"]
    assert "runs/a/metrics_test: the same results as comparison: a, listed once" in text
    for name in "ab":
        assert f"{results[name]['depth']['abs_rel']:.4f}" in page.cells
    # Both runs found: no "no config.yaml" for the folder, each run's config with the keys that differ.
    assert "no config.yaml" not in text and "sa4depth report: demo" in text and "(2 runs)" in text
    assert "runs/a/config.yaml</summary>" in text and "runs/b/config.yaml</summary>" in text
    keys = page.cells[page.cells.index("key") :]
    assert "trainer.seed" in keys and "output_dir" in keys and "model.encoder" not in keys
    # One curves figure with both runs, constant series named instead of drawn.
    assert "Training curves of 2 runs overlaid (TensorBoard): runs/a, runs/b" in text
    assert "val/count = 6" in text and "val/n_skipped = 0" in text
    curves = next(src for src in page.images if src == _src_of(text, "Training curves of 2 runs"))
    with Image.open(io.BytesIO(base64.b64decode(curves.split(",", 1)[1]))) as im:
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(int)
    for color in ((31, 119, 180), (255, 127, 14)):  # matplotlib's first two colours: run a, run b
        assert (np.abs(pixels - color).max(axis=1) <= 8).sum() > 50, color
    # Depth of both models on the same test frames in one figure, a trajectory per run.
    assert text.count("<figcaption>Test frames: ") == 1
    assert "prediction (runs/a: best.ckpt, runs/b: best.ckpt; " in text
    assert "Pose-network trajectory of runs/a" in text and "Pose-network trajectory of runs/b" in text
    # Curves, each result's per-sequence scales, depth samples, two trajectories; not the rendered world's
    # frames in data/ (a demo's thousands of training images), only the demo's figure.
    assert len(page.images) == 7 and "data/sequences" not in text
    assert text.count('alt="depth_comparison.png"') == 1


def _src_of(html: str, caption: str) -> str:
    """The data URI of the figure whose caption starts with ``caption``."""
    figure = html.split(f'alt="{caption}', 1)[1]
    return figure.split('src="', 1)[1].split('"', 1)[0]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    path, results = report
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [*common, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert f"<td>{results['depth']['abs_rel']:.4f}</td>" in dom
    assert dom.count('<img alt="') == 5 and dom.count('src="data:image/png;base64,') == 5
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1200,3000", path.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert len(pixels) == 1200 * 3000
    # Text alone renders a few hundred grey levels; the inlined plots and colour maps add thousands more.
    assert len(np.unique(pixels, axis=0)) > 2000
