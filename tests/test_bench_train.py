"""The training benchmark runs end to end on tiny settings, so that CI keeps it working."""

import math

import pytest
import torch

from benchmarks.bench_train import main

TINY = [
    "--device=cpu",
    "--threads=1",  # OpenMP threads wait for each other: slow when other processes share the cores
    "--size",
    "64",
    "96",
    "--batch=2",
    "--gts=3",
    "--steps=1",
    "--no-memory",  # two fresh Python processes: seconds of imports
    "--set=model.fpn_channels=16",
    "--set=model.head_channels=16",
    "--set=model.stacked_convs=1",
    "--set=model.gn_groups=4",
]
SMALL_REFERENCE = "torchvision RetinaNet, our small backbone + FPN"
CASES = {  # overrides: (our row's name, the reference's)
    "paa": ([], ("lad_edu PAA", SMALL_REFERENCE)),
    "lad": (["distill.mode=lad", "distill.teacher_backbone=small"], ("lad_edu PAA + lad", SMALL_REFERENCE)),
    "resnet": (
        ["model.backbone=resnet18", "model.frozen_stages=1", "model.norm_eval=true"],
        ("lad_edu PAA", "torchvision RetinaNet-R18-FPN"),
    ),
}


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("case", CASES)
def test_both_models_train_and_are_timed(case, capsys, keep_threads):
    overrides, names = CASES[case]
    rows = main([*TINY, *(f"--set={o}" for o in overrides)])
    assert tuple(row["model"] for row in rows) == names
    for row in rows:
        assert 0 < row["assign ms"] < row["step ms"]
        assert row["images/s"] == pytest.approx(2e3 / row["step ms"])
        assert math.isnan(row["peak MB"])
    ours, reference = rows
    assert reference["vs reference"] == 1.0
    assert ours["vs reference"] == pytest.approx(reference["step ms"] / ours["step ms"])
    table = capsys.readouterr().out
    assert "batch 2 of 64x96" in table and f"| {names[1]}" in table
