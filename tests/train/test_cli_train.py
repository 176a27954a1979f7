"""The train and demo commands refuse, in one line, what would lose a run or waste one: training into a
folder that holds a run (unless --resume or --overwrite) and a demo of 0 steps."""

import pytest
import torch

from sa4depth.apps.cli import main
from sa4depth.config import load_config
from sa4depth.data.toy import toy_run_overrides, toy_world
from sa4depth.errors import InputError
from sa4depth.train.run import prepare_run_folder

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return toy_world(tmp_path_factory.mktemp("world"), frames=5)


def train_args(world, out, *extra):
    return ["train", *extra, *toy_run_overrides(world, out), "data.max_val_samples=1"]


def step(path):
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"]


def test_a_folder_holding_a_run_is_refused_unless_overwrite(world, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(world, out, "--max-steps", "2")) == 0
    last = out / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    old_events = sorted((out / "tensorboard").glob("events.*"))
    capsys.readouterr()

    assert main(train_args(world, out, "--max-steps", "1")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {out}: holds a run ("), err
    for fragment in (
        "checkpoints/last.ckpt at step 2",
        "config.yaml",
        "tensorboard/",
        "--resume",
        "--overwrite",
    ):
        assert fragment in err, (fragment, err)
    assert last.read_bytes() == before  # nothing of the old run touched

    with pytest.raises(SystemExit) as info:  # argparse: the two options exclude each other
        main(train_args(world, out, "--resume", "--overwrite"))
    assert info.value.code == 2 and last.read_bytes() == before

    assert main(train_args(world, out, "--overwrite", "--max-steps", "1")) == 0
    assert step(last) == 1
    events = sorted((out / "tensorboard").glob("events.*"))
    assert len(events) == 1 and not set(events) & set(old_events)  # the old logs went with the old run


def test_fork_from_refuses_a_different_training_in_one_line(world, tmp_path, capsys):
    base = tmp_path / "base"
    assert main(train_args(world, base, "--max-steps", "2", "trainer.keep_checkpoint_steps=[1]")) == 0
    kept = base / "checkpoints" / "step_1.ckpt"
    assert step(kept) == 1
    capsys.readouterr()
    fork = tmp_path / "fork"
    # Refining from step 0 differs from the baseline's training at step 1 already.
    args = train_args(world, fork, "--fork-from", str(kept), "--max-steps", "2", "refine.enabled=true")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {kept}: saved at step 1, after the fork's"), err
    assert not fork.exists()


def test_output_dir_that_is_a_file_is_refused(world, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(train_args(world, tmp_path / "file")) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'file'}: output_dir is a file, not a folder\n"


def test_other_ranks_of_a_multi_process_run_neither_refuse_nor_delete(tmp_path, monkeypatch):
    # Lightning starts rank 1 by re-running the command after rank 0 has begun writing the run.
    (tmp_path / "config.yaml").write_text("rank 0's\n")
    cfg = load_config(None, [f"output_dir={tmp_path}"])
    with pytest.raises(InputError, match="holds a run"):
        prepare_run_folder(cfg, resume=False, overwrite=False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    prepare_run_folder(cfg, resume=False, overwrite=False)
    prepare_run_folder(cfg, resume=False, overwrite=True)
    assert (tmp_path / "config.yaml").read_text() == "rank 0's\n"


def test_demo_refuses_zero_steps_before_doing_anything(tmp_path, capsys, monkeypatch):
    import sa4depth.apps.demo

    monkeypatch.setattr(sa4depth.apps.demo, "run_demo", lambda *a, **k: pytest.fail("the demo started"))
    assert main(["demo", "--steps", "0", "--out", str(tmp_path / "demo")]) == 2
    assert capsys.readouterr().err == "error: --steps: must be at least 1 training step per model, got 0\n"
    assert list(tmp_path.iterdir()) == []
