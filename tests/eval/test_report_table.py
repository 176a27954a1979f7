"""Result tables and strict, atomic metric JSON files."""

import json
import math

import numpy as np
import pytest
import torch

from sa4depth.eval.protocols import KITTI_EIGEN
from sa4depth.eval.report_table import format_table, to_jsonable, write_metrics_json


def test_table_rows_columns_and_missing_values():
    rows = {
        "monodepth2": {"abs_rel": 0.1154, "rmse": 4.863, "count": 697},
        "sa4depth": {"abs_rel": math.nan, "a1": np.float32(0.88)},
    }
    lines = format_table(rows).splitlines()
    assert lines[0].split("|")[1:-1] == [" name       ", " AbsRel ", " RMSE  ", " count ", " d<1.25 "]
    assert set(lines[1]) == {"|", "-"}
    cells = [c.strip() for c in lines[2].split("|")[1:-1]]
    assert cells == ["monodepth2", "0.115", "4.863", "697", "-"]
    cells = [c.strip() for c in lines[3].split("|")[1:-1]]
    assert cells == ["sa4depth", "-", "-", "-", "0.880"]
    assert len({len(line) for line in lines}) == 1  # aligned


def test_table_chosen_columns_and_precision():
    text = format_table({"a": {"t_err": 2.961, "r_err": 1.0}}, columns=["r_err"], precision=2)
    assert "t_err" not in text and "1.00" in text


def test_json_is_strict_and_atomic(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    data = {
        "depth": {"abs_rel": np.float64(0.1), "rmse": float("nan"), "count": np.int64(3)},
        "scales": np.array([1.0, np.inf]),
        "tensor": torch.tensor([0.5]),
        "protocol": KITTI_EIGEN,
        "by_length": {100: 2.5},
    }
    write_metrics_json(path, data)
    text = path.read_text()

    def reject(constant):
        raise AssertionError(f"non-strict JSON constant {constant}")

    loaded = json.loads(text, parse_constant=reject)
    assert loaded["depth"] == {"abs_rel": 0.1, "rmse": None, "count": 3}
    assert loaded["scales"] == [1.0, None] and loaded["tensor"] == [0.5]
    assert loaded["protocol"]["crop"] == "garg" and loaded["protocol"]["gt_rows"] == [0.0, 1.0]
    assert loaded["by_length"] == {"100": 2.5}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]
    write_metrics_json(path, {"x": 1})  # overwrite in place
    assert json.loads(path.read_text()) == {"x": 1}


def test_unserialisable_values_raise():
    with pytest.raises(TypeError, match="object"):
        to_jsonable({"x": object()})
