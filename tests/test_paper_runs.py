"""The paper's runs as data: every config loads, every command parses (torchrun's and lad-edu's parsers),
trains with the paper's batch of 16, and the cost estimate follows its stated assumptions."""

import shlex

import pytest
from torch.distributed.run import get_args_parser

from lad_edu.cli import build_parser
from lad_edu.train.config import CONFIG_DIR, load_config
from lad_edu.train.paper import IMAGENET_WEIGHTS, MMDET_PAA_TEACHERS, PAPER_RUNS, gpu_hours, paper_runs_table

BY_CONFIG = {run.config: run for run in PAPER_RUNS}


def parsed(command: str):
    """The torchrun arguments and the lad-edu arguments of ``command``."""
    words = shlex.split(command)
    assert words[0] == "torchrun"
    launcher = get_args_parser().parse_args(words[1:])
    assert launcher.module and launcher.training_script == "lad_edu.cli"
    return launcher, build_parser().parse_args(launcher.training_script_args)


@pytest.mark.parametrize("run", PAPER_RUNS, ids=lambda run: run.config)
@pytest.mark.parametrize("gpus", [8, 2, 1])
def test_the_command_parses_and_trains_the_config_with_the_papers_batch(run, gpus):
    launcher, args = parsed(run.command(gpus=gpus))
    assert int(launcher.nproc_per_node) == gpus
    assert (args.command, args.config, str(args.out), str(args.data)) == (
        "train",
        run.config,
        run.out,
        "data/coco",
    )
    cfg = load_config(args.config, args.set)  # every --set names a real key
    assert cfg.data.batch_size * gpus == 16  # section 4.1: batch size 16
    assert cfg.model.backbone_weights == f"weights/{IMAGENET_WEIGHTS[cfg.model.backbone]}"
    assert cfg.data.train_split == "train2017" and cfg.data.val_split == "val2017"


def test_a_number_of_gpus_that_does_not_divide_the_batch_is_refused():
    with pytest.raises(ValueError, match="gpus must divide the paper's batch of 16 images, got 3"):
        PAPER_RUNS[0].command(gpus=3)


@pytest.mark.parametrize("run", PAPER_RUNS, ids=lambda run: run.config)
def test_the_config_states_the_ap_the_table_gives(run):
    text = (CONFIG_DIR / f"{run.config}.yaml").read_text()
    for _, ap in run.ap:
        assert f"{ap} AP" in text
    assert len(run.ap) == (2 if load_config(run.config).distill.mode == "colad" else 1)


@pytest.mark.parametrize("run", [run for run in PAPER_RUNS if run.teacher], ids=lambda run: run.config)
def test_a_lad_run_finds_its_teacher_where_the_teacher_run_writes_it(run):
    cfg = load_config(run.config)
    teacher = BY_CONFIG[run.teacher]
    assert cfg.distill.teacher_checkpoint == f"{teacher.out}/checkpoint.pt"
    assert load_config(teacher.config).model.backbone == cfg.distill.teacher_backbone
    _, args = parsed(run.command(mmdet_teacher=True))
    zoo = f"weights/{MMDET_PAA_TEACHERS[cfg.distill.teacher_backbone]}"
    assert load_config(args.config, args.set).distill.teacher_checkpoint == zoo


def test_the_estimate_follows_its_stated_assumptions():
    # 12 epochs of 118,287 images, 16 a step, on 8 GPUs: V100 seconds per step of RetinaNet
    steps_times_gpus = 12 * 118_287 / 16 * 8 / 3600
    expected = {
        "paa_r50_fpn_1x": 0.496,
        "paa_r101_fpn_1x": 0.643,
        "lad_r50_paa_r101_1x": 0.496 + 0.643 / 3,  # the teacher's forward: a third of its step
        "solad_r50_paa_r101_1x": 0.496 + 0.643 / 3,
        "lad_r101_paa_r50_1x": 0.643 + 0.496 / 3,
        "colad_r50_r101_1x": 0.496 + 0.643,  # both networks train
    }
    for config, seconds in expected.items():
        assert BY_CONFIG[config].estimated_gpu_hours() == pytest.approx(seconds * steps_times_gpus)
    assert gpu_hours(10.0, 4, epochs=2, images=1800) == pytest.approx(0.4)  # 360 s on 4 GPUs
    assert "| Table 2, Baseline PAA | `paa_r50_fpn_1x` | PAA-R50 40.4 | ≈ 100 | – |" in paper_runs_table()


def test_colads_second_network_gets_its_own_imagenet_weights_or_a_clear_error():
    from lad_edu.train.config import ConfigError, other_network

    colad = ["model.backbone_weights=w/r50.pth", "distill.mode=colad", "distill.teacher_backbone=resnet101"]
    cfg = load_config("colad_r50_r101_1x", colad)
    with pytest.raises(ConfigError, match="distill.teacher_backbone_weights=PATH"):
        other_network(cfg, imagenet=True)
    assert other_network(cfg, imagenet=False).backbone_weights is None  # a checkpoint gives every weight
    given = load_config("colad_r50_r101_1x", [*colad, "distill.teacher_backbone_weights=w/r101.pth"])
    model = other_network(given, imagenet=True)
    assert (model.backbone, model.backbone_weights) == ("resnet101", "w/r101.pth")
    same = load_config("colad_r50_r101_1x", [*colad, "distill.teacher_backbone=resnet50"])
    assert other_network(same, imagenet=True).backbone_weights == "w/r50.pth"
    command = next(run for run in PAPER_RUNS if run.config == "colad_r50_r101_1x").command()
    assert "distill.teacher_backbone_weights=weights/resnet101-63fe2227.pth" in command
