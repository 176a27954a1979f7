"""The constant-depth reference row: a constant map scores what median(GT) per image scores."""

import numpy as np
import pytest

from sa4depth.config import load_config
from sa4depth.data import synthetic
from sa4depth.data.datamodule import build_dataset
from sa4depth.eval.evaluate import constant_depth_reference


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    root = tmp_path_factory.mktemp("street") / "world"
    synthetic.render_dataset(root, scene="driving", sequences=4, frames=8, height=64, width=192, seed=3)
    return root


def test_constant_depth_scores_each_images_median_ground_truth(street):
    cfg = load_config(None, [f"data.root={street}", "data.height=64", "data.width=192"])
    got = constant_depth_reference(cfg, "test", protocol="synthetic")["depth"]
    # By hand: median scaling turns a constant into median(gt) over the valid pixels (0.1 < gt < 80 m).
    abs_rel, a1 = [], []
    dataset = build_dataset(cfg.data, "test", train=False)
    for i in range(len(dataset)):
        gt = dataset[i]["depth"][0].numpy().astype(np.float64)
        gt = gt[(gt > 0.1) & (gt < 80.0)]
        pred = np.median(gt)
        abs_rel.append(np.mean(np.abs(pred - gt) / gt))
        a1.append(np.mean(np.maximum(pred / gt, gt / pred) < 1.25))
    assert got["count"] == len(dataset) > 0
    assert got["abs_rel"] == pytest.approx(np.mean(abs_rel), rel=1e-5)
    assert got["a1"] == pytest.approx(np.mean(a1), rel=1e-5)
    # A street has depth structure, so the floor is far from perfect.
    assert got["abs_rel"] > 0.2
