"""Tests of `sa4depth.errors`: bad input ends a benchmark script with one line, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from sa4depth.errors import InputError, run_script

ROOT = Path(__file__).resolve().parent.parent


def test_run_script_turns_an_input_error_into_one_line():
    def main():
        raise InputError("runs/x/last.ckpt", "checkpoint not found")

    with pytest.raises(SystemExit) as exit_info:
        run_script(main)
    assert exit_info.value.code == "error: runs/x/last.ckpt: checkpoint not found"


def test_run_script_lets_other_errors_through():
    def main():
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        run_script(main)


def test_a_benchmark_script_reports_a_bad_override_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/compare_sa4depth.py", "--out", str(tmp_path), "trainer.max_stepz=3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: command line: config key 'trainer.max_stepz': Key 'max_stepz' not in 'TrainerConfig'. "
        "Did you mean one of: 'max_steps', 'max_epochs'?"
    ]
    assert not any(tmp_path.iterdir())  # nothing written
