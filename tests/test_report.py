"""The HTML run report: one self-contained file with metrics, plots, config and versions, checked by parsing
it and by rendering it in a real headless browser (skipped when Chromium is not installed)."""

import base64
import io
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image

from sa4depth.config import load_config
from sa4depth.data import layout
from sa4depth.data.toy import toy_world
from sa4depth.errors import InputError
from sa4depth.report import write_report

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
    assert "broken.json: skipped, not valid JSON" in path.read_text()


def test_report_of_an_empty_folder_explains_what_is_missing(tmp_path):
    path = write_report(tmp_path, tmp_path / "r" / "out.html", samples=0)
    text = path.read_text()
    assert (
        "No metrics JSON found" in text and "no config.yaml" in text and "no TensorBoard event files" in text
    )
    with pytest.raises(InputError, match="run folder not found"):
        write_report(tmp_path / "missing")


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
