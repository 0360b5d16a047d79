"""The training engine on a tiny generated dataset: every mode learns, checkpoints, resumes exactly."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lad_edu.data.classroom import make_classroom_dataset
from lad_edu.train import load_config, train
from lad_edu.train.checkpoint import CheckpointError, load_checkpoint, load_run_detector, save_checkpoint
from lad_edu.train.config import ConfigError, config_to_dict, override_config, shipped_configs
from lad_edu.train.engine import lr_factor

MODES = {
    "fixed": ["assign.assigner=fixed"],
    "atss": ["assign.assigner=atss"],
    "paa": [],
    "soft": ["distill.mode=soft"],
    "lad": ["distill.mode=lad"],
    "solad": ["distill.mode=solad"],
    "colad": ["distill.mode=colad", "distill.teacher_backbone=small"],
    "colad_group": ["distill.mode=colad", "distill.teacher_backbone=small", "distill.granularity=group"],
    "paa_cop": ["model.cop=true"],
    "tal": ["assign.assigner=tal"],
    "simota": ["assign.assigner=simota"],
    "hungarian": ["assign.assigner=hungarian"],
    "lad_tal": ["distill.mode=lad", "assign.assigner=tal"],  # a TAL teacher's labels (LAD with another rule)
    "lad_simota": ["distill.mode=lad", "assign.assigner=simota"],
}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return make_classroom_dataset(tmp_path_factory.mktemp("data") / "tiny", 8, 4, seed=3, progress=False)


def tiny(data, *overrides):
    """classroom_paa shrunk to seconds: 128 px, a 16-channel head, one loader process."""
    return [
        f"data.root={data}",
        "data.short_sides=[128]",
        "data.max_size=128",
        "data.eval_short_side=128",
        "data.batch_size=4",
        "data.num_workers=0",
        "model.fpn_channels=16",
        "model.head_channels=16",
        "model.stacked_convs=1",
        "model.gn_groups=4",
        "optim.warmup_iters=2",
        "log_every=1",
        "eval_every=1",
        *overrides,
    ]


@pytest.fixture(scope="session")
def teacher(tiny_data, tmp_path_factory):
    """A PAA run of a few iterations: the teacher checkpoint of soft / lad / solad."""
    run = tmp_path_factory.mktemp("teacher")
    train(load_config("classroom_paa", tiny(tiny_data, "max_iters=2")), run)
    return run / "checkpoint.pt"


def train_losses(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if json.loads(line)["kind"] == "train"]


def total(record: dict) -> float:
    return sum(v for k, v in record.items() if k.startswith("loss"))


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_trains_checkpoints_and_resumes_exactly(mode, tiny_data, teacher, tmp_path):
    overrides = tiny(tiny_data, *MODES[mode], f"distill.teacher_checkpoint={teacher}")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(load_config("classroom_paa", [*overrides, "max_iters=3"]), straight)
    train(load_config("classroom_paa", [*overrides, "max_iters=2"]), resumed)
    state = load_checkpoint(resumed / "checkpoint.pt")
    assert (state["epoch"], state["iter"]) == (1, 0)  # 8 images / 4 per batch: epoch 1 ended at iteration 2
    train(load_config("classroom_paa", [*overrides, "max_iters=3"]), resumed, resume=True)

    expected, got = train_losses(straight), train_losses(resumed)
    assert len(expected) == 3 and len(got) == 3
    assert all(math.isfinite(total(r)) for r in expected)
    for key, value in expected[2].items():  # the resumed third iteration is the straight one, exactly
        if key not in ("images_per_s",):
            assert got[2][key] == value or (math.isnan(value) and math.isnan(got[2][key])), key
    for key in ("pos_per_gt", "gts_without_pos", "pos_iou", "pos_share_l0"):
        assert key in expected[0]
    if mode.startswith("colad"):
        assert {"rho_1", "rho_2", "teacher_2", "loss_cls_2"} <= set(expected[0])
    if mode in ("soft", "solad"):
        assert {"loss_soft_cls", "loss_soft_bbox"} <= set(expected[0])
    saved = load_checkpoint(straight / "checkpoint.pt")
    assert ("partner" in saved) == mode.startswith("colad")
    _, _, network = load_run_detector(straight / "checkpoint.pt")  # the one way back to a trained network
    assert all(torch.equal(v, saved["model"][k]) for k, v in network.state_dict().items())
    if mode.startswith("colad"):
        _, _, network_2 = load_run_detector(straight / "checkpoint.pt", partner=True)
        assert all(torch.equal(v, saved["partner"][k]) for k, v in network_2.state_dict().items())
    else:
        with pytest.raises(CheckpointError, match="has no second network"):
            load_run_detector(straight / "checkpoint.pt", partner=True)
    assert (straight / "config.yaml").is_file()
    assert (straight / "eval" / "coco_stats.json").is_file()  # the end of epoch 1 is evaluated


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_overfits_a_fixed_batch(mode, tiny_data, teacher):
    from lad_edu.data.coco import CocoDetection
    from lad_edu.data.transforms import EvalTransform, collate
    from lad_edu.model import build_detector
    from lad_edu.train.engine import autocast_factory
    from lad_edu.train.learner import Learner, Networks, load_teacher

    cfg = load_config("classroom_paa", tiny(tiny_data, *MODES[mode], f"distill.teacher_checkpoint={teacher}"))
    dataset = CocoDetection(tiny_data, "train")
    transform = EvalTransform(128, 128)
    images, targets = collate([transform(*dataset[i]) for i in range(4)])
    torch.manual_seed(0)
    model = build_detector(cfg.model, len(dataset.category_ids))
    partner = build_detector(cfg.model, len(dataset.category_ids)) if mode.startswith("colad") else None
    networks = Networks(model, partner)
    frozen = None
    if cfg.distill.mode in ("soft", "lad", "solad"):
        frozen = load_teacher(cfg, dataset.category_ids, model, torch.device("cpu"))
    learner = Learner(cfg, networks, networks, frozen)
    optimizer = torch.optim.SGD(networks.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(30):
        loss, _, _ = learner.step(images.float(), targets, autocast_factory("none", torch.device("cpu")))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < 0.75 * sum(losses[:5]) / 5, losses
    if frozen is not None:
        assert all(p.grad is None for p in frozen.parameters())


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(tiny_data, tmp_path):
    from lad_edu.train.engine import NonFiniteLossError

    overrides = tiny(tiny_data, "data.batch_size=2")  # 4 iterations an epoch
    train(load_config("classroom_paa", [*overrides, "max_iters=4"]), tmp_path)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    diverging = load_config("classroom_paa", [*overrides, "optim.gamma=1e30", "optim.milestones=[1]"])
    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        train(diverging, tmp_path, resume=True)  # resumed, the run diverges within its second epoch
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_lr_schedule_warms_up_and_steps():
    cfg = load_config("paa_r50_fpn_1x").optim
    assert lr_factor(0, 100, cfg) == pytest.approx(0.001)
    assert lr_factor(250, 100, cfg) == pytest.approx(0.001 + 0.999 * 0.5)
    assert lr_factor(799, 100, cfg) == 1.0
    assert lr_factor(800, 100, cfg) == pytest.approx(0.1)
    assert lr_factor(1100, 100, cfg) == pytest.approx(0.01)


def test_shipped_configs_load_and_name_their_target():
    names = shipped_configs()
    for name in [
        "paa_r50_fpn_1x",
        "paa_r101_fpn_1x",
        "lad_r50_paa_r101_1x",
        "lad_r101_paa_r50_1x",
        "colad_r50_r101_1x",
        "solad_r50_paa_r101_1x",
        *(f"classroom_{m}" for m in ("fixed", "atss", "paa", "soft", "lad", "solad", "colad")),
        *(f"classroom_{m}" for m in ("tal", "simota", "hungarian")),
    ]:
        assert name in names
        load_config(name)
    from lad_edu.train.config import CONFIG_DIR

    for name in names:
        if not name.startswith("classroom"):
            assert " AP" in (CONFIG_DIR / f"{name}.yaml").read_text(), name
    cfg = load_config("lad_r101_paa_r50_1x")
    assert (cfg.model.backbone, cfg.distill.teacher_backbone, cfg.distill.mode) == (
        "resnet101",
        "resnet50",
        "lad",
    )


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="'optim.lrr'.*valid keys here: lr"):
        load_config("classroom_paa", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="optim.lr must be float"):
        load_config("classroom_paa", ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="assign.assigner must be one of"):
        load_config("classroom_paa", ["assign.assigner=ota"])
    with pytest.raises(
        ConfigError, match=r"assign \(tal\): variant must be one of \('mmdet', 'ultralytics'\)"
    ):
        load_config("classroom_tal", ["assign.variant=yolo"])
    with pytest.raises(ConfigError, match=r"assign \(simota\): candidate_topk must be >= 1"):
        load_config("classroom_simota", ["assign.candidate_topk=0"])
    with pytest.raises(ConfigError, match="no shipped config named 'classroom_pa'"):
        load_config("classroom_pa")
    with pytest.raises(ConfigError, match="key=value"):
        load_config("classroom_paa", ["optim.lr"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"base: {loop}\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(str(loop))


def test_a_yaml_file_builds_on_a_shipped_config_and_round_trips(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: classroom_paa\nassign:\n  assigner: atss\noptim:\n  milestones: [5]\n")
    cfg = load_config(str(path), ["optim.lr=0.02"])
    assert (cfg.assign.assigner, cfg.optim.milestones, cfg.optim.lr, cfg.model.backbone) == (
        "atss",
        (5,),
        0.02,
        "small",
    )
    assert override_config(config_to_dict(cfg)) == cfg


def test_checkpoints_are_atomic_and_read_safely(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}, "epoch": 1}, path)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")


def run_cli(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "lad_edu.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


def test_cli_train_eval_and_assign(tiny_data, tmp_path):
    from lad_edu.cli import main

    run = tmp_path / "run"
    sets = [a for o in tiny(tiny_data, "optim.epochs=1") for a in ("--set", o)]
    done = run_cli("train", "--config", "classroom_atss", "--data", str(tiny_data), "--out", str(run), *sets)
    assert done.returncode == 0, done.stderr
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "checkpoint.pt",
        "eval/detections.json",
        "eval/coco_stats.json",
    ):
        assert (run / name).is_file(), name
    stats = json.loads((run / "eval" / "coco_stats.json").read_text())
    assert set(stats) >= {"AP", "AP50", "AR100"}

    out = tmp_path / "again"
    main(["eval", "--checkpoint", str(run / "checkpoint.pt"), "--data", str(tiny_data), "--out", str(out)])
    assert json.loads((out / "coco_stats.json").read_text()) == stats

    png = tmp_path / "a.png"
    main(["assign", "--assigner", "paa", "--checkpoint", str(run / "checkpoint.pt"), "--out", str(png)])
    assert png.read_bytes()[:4] == b"\x89PNG"

    with pytest.raises(SystemExit, match="optim.lrr"):
        main(["train", "--config", "classroom_paa", "--set", "optim.lrr=1", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="nope.pt"):
        main(["eval", "--checkpoint", str(tmp_path / "nope.pt")])


def test_two_process_torchrun_trains_and_evaluates(tiny_data, tmp_path):
    run = tmp_path / "ddp"
    sets = [a for o in tiny(tiny_data, "data.batch_size=2", "optim.epochs=1") for a in ("--set", o)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",  # a free port on this machine
            "--nproc-per-node",
            "2",
            "-m",
            "lad_edu.cli",
            "train",
            "--config",
            "classroom_paa",
            "--out",
            str(run),
            *sets,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    assert (
        len(train_records) == 2
    )  # 8 images / (2 processes x 2 images) = 2 iterations, rank 0 logs once each
    evals = [r for r in records if r["kind"] == "eval"]
    assert len(evals) == 1 and "AP" in evals[0]
    detections = json.loads((run / "eval" / "detections.json").read_text())
    image_ids = {d["image_id"] for d in detections}
    assert len(image_ids) > 2  # both ranks' halves of the validation images were gathered


@pytest.fixture(scope="session")
def coco_layout(tiny_data, tmp_path_factory):
    """The tiny dataset under COCO's own split names (train2017 / val2017)."""
    import shutil

    root = tmp_path_factory.mktemp("coco")
    for ours, coco in (("train", "train2017"), ("val", "val2017")):
        shutil.copytree(tiny_data / ours, root / coco)
        (root / "annotations").mkdir(exist_ok=True)
        shutil.copy(
            tiny_data / "annotations" / f"instances_{ours}.json",
            root / "annotations" / f"instances_{coco}.json",
        )
    return root


def test_the_coco_configs_start_training_on_a_coco_layout_directory(coco_layout, tmp_path):
    small = [f"data.root={coco_layout}", "data.short_sides=[128]", "data.max_size=128", "data.batch_size=1"]
    small += ["data.num_workers=0", "max_iters=1", "log_every=1"]
    train(load_config("paa_r50_fpn_1x", small), tmp_path / "paa")
    teacher = tmp_path / "paa" / "checkpoint.pt"
    assert load_checkpoint(teacher)["config"]["model"]["backbone"] == "resnet50"
    # the distillation configs run fp16 on GPUs; on this CPU they run bf16 autocast
    for name in ("lad_r50_paa_r101_1x", "colad_r50_r101_1x"):
        cfg = load_config(name, [*small, "amp=bf16", f"distill.teacher_checkpoint={teacher}"])
        train(cfg, tmp_path / name)
        record = train_losses(tmp_path / name)[0]
        assert math.isfinite(total(record)), name
    with pytest.raises(ConfigError, match="'fp16' needs a CUDA device"):
        train(
            load_config("lad_r50_paa_r101_1x", [*small, f"distill.teacher_checkpoint={teacher}"]),
            tmp_path / "x",
        )


def test_train_without_data_writes_the_classroom_dataset_on_first_use(tmp_path, monkeypatch):
    from lad_edu.data.classroom import DEFAULT_DATA, data_root

    monkeypatch.chdir(tmp_path)
    assert data_root(None, str(DEFAULT_DATA)) == str(DEFAULT_DATA)
    assert (tmp_path / DEFAULT_DATA / "annotations" / "instances_train.json").is_file()
    assert data_root(tmp_path / "elsewhere", str(DEFAULT_DATA)) == str(tmp_path / "elsewhere")


def test_ctrl_c_writes_a_checkpoint_of_the_interrupted_position(tiny_data, tmp_path):
    import signal
    import time

    run = tmp_path / "run"
    sets = [a for o in tiny(tiny_data, "optim.epochs=100", "eval_every=0") for a in ("--set", o)]
    process = subprocess.Popen(
        [sys.executable, "-m", "lad_edu.cli", "train", "--config", "classroom_paa", "--out", str(run), *sets],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell without job control starts background commands with SIGINT ignored, and Python keeps an
        # ignored SIGINT: give the child the default, as a terminal would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (
        not metrics.is_file() or len(metrics.read_text().splitlines()) < 3
    ):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].endswith("--resume")
    state = load_checkpoint(run / "checkpoint.pt")
    trained = state["epoch"] * 2 + state["iter"]  # 2 iterations an epoch
    assert trained >= 3  # nothing that was trained is lost
    assert trained >= len(train_losses(run)) - 1  # (the signal may land after the next metrics line)
