"""Results tables for the terminal and strict JSON metric files.

`format_table` renders rows of metrics as a Markdown-style text table; `write_metrics_json` writes atomically.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from sa4depth.data.layout import atomic_write_text

COLUMN_TITLES = {
    "abs_rel": "AbsRel",
    "sq_rel": "SqRel",
    "rmse": "RMSE",
    "rmse_log": "RMSElog",
    "a1": "d<1.25",
    "a2": "d<1.25^2",
    "a3": "d<1.25^3",
    "scale_mean": "scale",
    "scale_std": "scale std",
    "seq_scale_std": "SeqScaleStd",
    "within_seq_cv": "CV in seq",
    "t_err": "t_err %",
    "r_err": "r_err deg/100m",
    "ate": "ATE m",
}
"""Header text for known metric keys; other keys are shown as they are."""


def _cell(value, precision: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "-" if not math.isfinite(number) else f"{number:.{precision}f}"


def format_table(
    rows: Mapping[str, Mapping[str, object]], columns: Sequence[str] | None = None, precision: int = 3
) -> str:
    """A Markdown-style table: one row per name, one column per metric; missing/NaN values show "-".

    Args:
        rows: row name -> metrics dict (e.g. "monodepth2" -> DepthMetricAccumulator.compute()).
        columns: metric keys to show, in order; default: every key of every row, in first-seen order.
        precision: decimals for floats (3, as in the papers' tables).

    Returns:
        The table as one string (no trailing newline); print it or write it to a file.

    Example:
        >>> print(format_table({"ours": {"abs_rel": 0.1154, "count": 697}}))
        | name | AbsRel | count |
        |------|--------|-------|
        | ours | 0.115  |   697 |
    """
    if columns is None:
        columns = list(dict.fromkeys(k for metrics in rows.values() for k in metrics))
    header = ["name"] + [COLUMN_TITLES.get(c, c) for c in columns]
    body = [[str(name)] + [_cell(m.get(c), precision) for c in columns] for name, m in rows.items()]
    widths = [max(len(r[j]) for r in [header, *body]) for j in range(len(header))]

    def line(cells: list[str], is_header: bool) -> str:
        out = []
        for j, (cell, w) in enumerate(zip(cells, widths, strict=True)):
            # Names and headers left-aligned; integers right-aligned so digits line up; floats left.
            right = not is_header and j > 0 and cell.lstrip("-").isdigit()
            out.append(cell.rjust(w) if right else cell.ljust(w))
        return "| " + " | ".join(out) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header, True), rule, *(line(r, False) for r in body)])


def to_jsonable(obj):
    """Recursively turn numpy/torch values, dataclasses and tuples into JSON types; NaN and inf become None.

    Example:
        >>> to_jsonable({"a": np.float32(0.5), "b": float("nan"), 3: (1, np.int64(2))})
        {'a': 0.5, 'b': None, '3': [1, 2]}
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, list | tuple | set):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to a metrics JSON file")


def write_metrics_json(path: str | os.PathLike, data: Mapping) -> None:
    """Write ``data`` as strict JSON (NaN/inf -> null, numpy/torch -> numbers), atomically (temp + rename)."""
    text = json.dumps(to_jsonable(data), indent=2, allow_nan=False)
    atomic_write_text(path, text + "\n")
