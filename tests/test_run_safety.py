"""Runs that lose nothing and overwrite nothing by accident, and checkpoints refused with the reason.

Issue 9: a directory holding a run is only continued or replaced when asked, two trainings cannot write
one directory, a kill -9 loses at most ``checkpoint_every`` iterations and a resume duplicates no metrics
row, metrics.jsonl is strict JSON, and a checkpoint that does not fit says why in one line.
"""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lad_edu.cli import main
from lad_edu.data.classroom import make_classroom_dataset
from lad_edu.train import load_config, train
from lad_edu.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lad_edu.train.config import ConfigError
from lad_edu.train.engine import MetricsLog
from lad_edu.train.run_dir import RunDirError, RunLock, truncate_metrics
from tests.test_train import tiny, train_losses


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_classroom_dataset(tmp_path_factory.mktemp("data") / "tiny", 8, 4, seed=3, progress=False)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A finished two-iteration run (one epoch of 8 images in batches of 4, evaluated)."""
    run = tmp_path_factory.mktemp("runs") / "classroom_paa"
    train(load_config("classroom_paa", tiny(data, "optim.epochs=1")), run)
    return run


def strict_rows(path: Path) -> list[dict]:
    """metrics.jsonl read by a parser that refuses NaN and Infinity, as strict JSON readers do."""

    def refuse(constant):
        raise ValueError(f"{path} holds {constant}, which is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def cli_args(*overrides) -> list[str]:
    return [arg for override in overrides for arg in ("--set", override)]


def copy_data(data: Path, to: Path, edit_annotations=None) -> Path:
    shutil.copytree(data, to)
    if edit_annotations is not None:
        for split in ("train", "val"):
            path = to / "annotations" / f"instances_{split}.json"
            path.write_text(json.dumps(edit_annotations(json.loads(path.read_text()))))
    return to


# config values


@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.epochs=0", "optim.epochs"),
        ("optim.epochs=-2", "optim.epochs"),
        ("checkpoint_every=-1", "checkpoint_every"),
        ("log_every=0", "log_every"),
    ],
)
def test_counts_out_of_range_are_config_errors_naming_the_field(override, key):
    with pytest.raises(ConfigError, match=f"^{key} must be at least"):
        load_config("classroom_paa", [override])


# metrics.jsonl: strict JSON, no duplicate rows after a resume


def test_metrics_log_writes_strict_json(tmp_path):
    log = MetricsLog(tmp_path, enabled=True)
    log.write({"kind": "train", "pos_iou": float("nan"), "loss": float("inf"), "AP": -1.0}, 1)
    log.close()
    (row,) = strict_rows(tmp_path / "metrics.jsonl")
    assert row == {"kind": "train", "pos_iou": None, "loss": None, "AP": -1.0}


def test_splits_without_objects_warn_and_keep_metrics_strict_json(data, tmp_path):
    empty = copy_data(data, tmp_path / "empty", lambda coco: {**coco, "annotations": []})
    with pytest.warns(UserWarning, match="has no objects") as warned:
        train(load_config("classroom_paa", tiny(empty, "optim.epochs=1")), tmp_path / "run")
    messages = " ".join(str(w.message) for w in warned)
    assert "instances_train.json has no objects" in messages
    assert "instances_val.json has no objects" in messages
    rows = strict_rows(tmp_path / "run" / "metrics.jsonl")
    assert rows[0]["kind"] == "train" and rows[0]["pos_per_gt"] is None
    assert [r["AP"] for r in rows if r["kind"] == "eval"] == [-1.0]  # COCOeval's "nothing to measure"


def test_truncate_metrics_keeps_the_rows_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [
        {"kind": "train", "epoch": 1, "iter": 1, "global_iter": 1},
        {"kind": "train", "epoch": 1, "iter": 2, "global_iter": 2},
        {"kind": "eval", "epoch": 1},
        {"kind": "train", "epoch": 2, "iter": 1, "global_iter": 3},
        {"kind": "train", "epoch": 2, "iter": 2, "global_iter": 4},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"kind": "tra')  # cut by a kill -9
    truncate_metrics(path, epoch=1, iteration=1)  # the checkpoint: epoch 2's first iteration done
    assert strict_rows(path) == rows[:4]
    truncate_metrics(path, epoch=1, iteration=0)  # at the end of epoch 1: its evaluation stays
    assert strict_rows(path) == rows[:3]


# a directory that holds a run


def test_a_directory_holding_a_run_is_continued_or_replaced_only_when_asked(data, tmp_path, capsys):
    out = tmp_path / "classroom_paa"
    sets = cli_args(*tiny(data, "optim.epochs=1"))
    command = ["train", "--config", "classroom_paa", "--out", str(out), *sets]
    main(command)
    (out / "notes.txt").write_text("mine")  # not a run's file: never removed
    first = (out / "checkpoint.pt").read_bytes()

    with pytest.raises(SystemExit, match=f"{out} already holds a run .*--resume.*--overwrite"):
        main(command)
    assert (out / "checkpoint.pt").read_bytes() == first  # the teacher another config reads is intact

    capsys.readouterr()
    main([*command, "--resume"])  # finished: says so and where the results are, exit 0
    said = capsys.readouterr().out
    assert f"{out} is already finished (epoch 1, iteration 0)" in said
    assert str(out / "metrics.jsonl") in said and "--overwrite" in said

    with pytest.raises(SystemExit, match="give one of them"):
        main([*command, "--resume", "--overwrite"])

    (out / "eval" / "old.json").write_text("{}")
    main([*command, "--overwrite"])
    assert not (out / "eval" / "old.json").exists()  # the old run's files are gone ...
    assert (out / "notes.txt").read_text() == "mine"  # ... and only those
    assert [r["kind"] for r in strict_rows(out / "metrics.jsonl")] == ["train", "train", "eval"]


def test_resume_without_a_checkpoint_names_the_path(data, tmp_path):
    out = tmp_path / "new"
    with pytest.raises(SystemExit, match=f"cannot resume: {out / 'checkpoint.pt'} does not exist"):
        main(["train", "--config", "classroom_paa", "--data", str(data), "--out", str(out), "--resume"])


# the lock


def test_a_directory_another_live_process_trains_into_is_refused(data, tmp_path):
    lock = tmp_path / ".lock"
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": "2024-01-01T00:00:00"}
    lock.write_text(json.dumps(holder))  # held by this very test process, which is alive
    with pytest.raises(RunDirError, match=f"process {os.getpid()} .*delete the lock file {lock}"):
        train(load_config("classroom_paa", tiny(data, "optim.epochs=1")), tmp_path)
    assert json.loads(lock.read_text()) == holder  # left to its owner


def test_a_stale_lock_is_taken_over_and_the_lock_is_removed_on_errors(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    lock = tmp_path / ".lock"
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "then"}))
    with pytest.warns(UserWarning, match=f"taking over {lock}: process {dead.pid}"):
        with RunLock(tmp_path):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
            with pytest.raises(RunDirError, match=f"process {os.getpid()}"), RunLock(tmp_path):
                pass  # a second holder is refused
    assert not lock.exists()
    with pytest.raises(RuntimeError, match="a failing run"), RunLock(tmp_path):
        raise RuntimeError("a failing run")
    assert not lock.exists()


# checkpoints that do not fit


def test_a_bare_state_dict_or_an_mmdetection_file_is_refused_with_the_reason(run, data, tmp_path):
    state = load_checkpoint(run / "checkpoint.pt")
    bare = save_checkpoint(state["model"], tmp_path / "bare.pt")
    zoo = save_checkpoint({"meta": {"epoch": 12}, "state_dict": state["model"]}, tmp_path / "zoo.pt")
    with pytest.raises(
        SystemExit, match=f"checkpoint {bare} is a bare state dict .*distill.teacher_checkpoint"
    ):
        main(["eval", "--checkpoint", str(bare), "--data", str(data), "--out", str(tmp_path / "e")])
    with pytest.raises(SystemExit, match=f"checkpoint {zoo} is an MMDetection checkpoint"):
        main(["eval", "--checkpoint", str(zoo), "--data", str(data), "--out", str(tmp_path / "e")])
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(bare, resumed / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="is a bare state dict"):
        train(load_config("classroom_paa", tiny(data, "optim.epochs=2")), resumed, resume=True)


def test_weights_that_do_not_fit_the_config_are_refused_naming_the_keys(run, data, tmp_path):
    resumed = shutil.copytree(run, tmp_path / "run")
    with pytest.raises(ValueError, match=r"checkpoint.pt does not fit Detector: shapes differ for \[.*16"):
        with pytest.warns(UserWarning, match="changed config: model.fpn_channels: 16 -> 8"):
            cfg = load_config("classroom_paa", tiny(data, "optim.epochs=2", "model.fpn_channels=8"))
            train(cfg, resumed, resume=True)


def test_eval_refuses_a_checkpoint_of_other_categories(run, data, tmp_path):
    state = load_checkpoint(run / "checkpoint.pt")
    state["category_ids"] = [*state["category_ids"][:-1], 99]  # as many classes, one of them another
    other = save_checkpoint(state, tmp_path / "other.pt")
    message = f"checkpoint {other} was trained on category ids \\[1, 2, .*99\\], .* has \\[1, 2, .*12\\]"
    with pytest.raises(SystemExit, match=message):
        main(["eval", "--checkpoint", str(other), "--data", str(data), "--out", str(tmp_path / "e")])


def test_a_teacher_of_other_categories_is_refused(run, data, tmp_path):
    state = load_checkpoint(run / "checkpoint.pt")
    state["category_ids"] = state["category_ids"][:5]
    teacher = save_checkpoint(state, tmp_path / "teacher.pt")
    cfg = load_config("classroom_lad", tiny(data, f"distill.teacher_checkpoint={teacher}"))
    with pytest.raises(
        ConfigError, match=f"teacher {teacher} was trained on category ids \\[1, 2, 3, 4, 5\\]"
    ):
        train(cfg, tmp_path / "lad")


def test_a_missing_teacher_says_which_run_produces_it(data, tmp_path):
    teacher = tmp_path / "runs" / "classroom_paa" / "checkpoint.pt"
    cfg = load_config("classroom_lad", tiny(data, f"distill.teacher_checkpoint={teacher}"))
    expected = f"distill.teacher_checkpoint {teacher} does not exist: train it first: lad-edu train --config "
    with pytest.raises(ConfigError, match=f"^{expected}classroom_paa --out {teacher.parent}"):
        train(cfg, tmp_path / "lad")
    assert not (tmp_path / "lad" / ".lock").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when there is no CUDA device")
def test_device_cuda_without_cuda_is_one_line(data, tmp_path):
    expected = "^lad-edu train: error: device=cuda, but torch finds no CUDA device here; use --set device=cpu"
    command = ["train", "--config", "classroom_paa", "--data", str(data), "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match=expected):
        main([*command, "--set", "device=cuda"])


# errors and interruptions on the command line


def test_an_error_in_a_loader_worker_is_one_line_naming_the_file(data, tmp_path):
    broken = copy_data(data, tmp_path / "broken")
    (broken / "train" / "000003.png").write_bytes(b"not a PNG")
    overrides = tiny(broken, "optim.epochs=1", "data.num_workers=1")
    with pytest.raises(SystemExit) as error:
        main(["train", "--config", "classroom_paa", "--out", str(tmp_path / "r"), *cli_args(*overrides)])
    message = str(error.value.code)  # the last line of the worker's traceback: "ValueError: ...000003.png..."
    assert re.match(r"lad-edu train: error: \w+: .*000003.png", message)
    assert "\n" not in message and "DataLoader worker" not in message


def test_ctrl_c_prints_one_line_saying_how_to_resume(data, tmp_path, monkeypatch, capsys):
    from lad_edu.train.learner import Learner

    step, calls = Learner.step, []

    def interrupted_at_the_third_step(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return step(self, *args)

    monkeypatch.setattr(Learner, "step", interrupted_at_the_third_step)
    out = tmp_path / "run"
    overrides = tiny(data, "optim.epochs=2", "eval_every=0")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--config", "classroom_paa", "--out", str(out), *cli_args(*overrides), "--overwrite"])
    assert exit_.value.code == 130
    (line,) = capsys.readouterr().err.strip().splitlines()
    resume = shlex.join(
        ["lad-edu", "train", "--config", "classroom_paa", "--out", str(out), *cli_args(*overrides)]
    )
    resume += " --resume"
    assert line == (
        f"lad-edu train: interrupted: checkpoint of epoch 2, iteration 0 written to {out / 'checkpoint.pt'}; "
        f"resume with: {resume}"
    )
    monkeypatch.setattr(Learner, "step", step)
    main(shlex.split(resume)[1:])
    assert [(r["epoch"], r["iter"]) for r in train_losses(out)] == [(1, 1), (1, 2), (2, 1), (2, 2)]


def test_ctrl_c_while_a_checkpoint_is_written_waits_until_it_is_complete(tmp_path, monkeypatch):
    save = torch.save

    def interrupted_save(state, f):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives as the file is written
        save(state, f)

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 3}, tmp_path / "checkpoint.pt")
    assert load_checkpoint(tmp_path / "checkpoint.pt") == {"epoch": 3}


# kill -9, then resume


def test_kill_9_loses_at_most_checkpoint_every_iterations_and_resumes_exactly(data, tmp_path):
    every = 2
    overrides = tiny(data, "data.batch_size=1", "optim.epochs=1", "eval_every=0", f"checkpoint_every={every}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def start(out: Path, *flags: str) -> subprocess.Popen:
        command = ["train", "--config", "classroom_paa", "--out", str(out), *cli_args(*overrides), *flags]
        return subprocess.Popen(
            [sys.executable, "-m", "lad_edu.cli", *command], env=env, stderr=subprocess.PIPE, text=True
        )

    straight, killed = start(tmp_path / "straight"), start(tmp_path / "killed")  # side by side: faster
    checkpoint, deadline = tmp_path / "killed" / "checkpoint.pt", time.monotonic() + 120
    while not (checkpoint.is_file() and load_checkpoint(checkpoint)["iter"] > 0):  # a mid-epoch checkpoint
        assert time.monotonic() < deadline and killed.poll() is None
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    state = load_checkpoint(checkpoint)
    saved = state["epoch"] * 8 + state["iter"]  # 8 iterations an epoch
    logged = max(r["global_iter"] for r in train_losses(tmp_path / "killed"))
    assert logged - saved <= every  # what the kill lost

    resumed = start(tmp_path / "killed", "--resume")
    stderr = {process: process.communicate(timeout=300)[1] for process in (resumed, straight)}
    assert resumed.returncode == straight.returncode == 0, stderr[resumed][-2000:] + stderr[straight][-2000:]
    assert f"taking over {tmp_path / 'killed' / '.lock'}: process {killed.pid}" in stderr[resumed]

    def rows(out: Path) -> list[dict]:
        return [
            {k: v for k, v in r.items() if k != "images_per_s"} for r in strict_rows(out / "metrics.jsonl")
        ]

    got, expected = rows(tmp_path / "killed"), rows(tmp_path / "straight")
    assert got == expected  # the same losses, iteration by iteration, and the same evaluation
    train_rows = [(r["epoch"], r["iter"]) for r in got if r["kind"] == "train"]
    assert len(train_rows) == len(set(train_rows)) == 8  # no duplicate rows


def test_run_interrupted_reaches_a_parent_process_whole():
    """``lad-edu compare`` trains in worker processes: Ctrl-C's exception is pickled back to the parent."""
    import pickle

    from lad_edu.train.engine import RunInterrupted

    error = RunInterrupted(Path("runs/x/checkpoint.pt"), 2, 7)
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is RunInterrupted and str(back) == str(error)
    assert (back.checkpoint, back.epoch, back.iteration) == (error.checkpoint, 2, 7)
