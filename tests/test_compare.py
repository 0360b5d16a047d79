"""``lad-edu compare`` on a tiny dataset: the report and its keys, the teacher, reuse, resume, the errors."""

import json
from dataclasses import replace

import pytest
import yaml

from benchmarks import bench_demo
from lad_edu.compare import RunFailedError, compare, plan_runs, run_state
from lad_edu.data.classroom import make_classroom_dataset
from lad_edu.train import train
from lad_edu.train.config import ConfigError, config_to_dict
from lad_edu.train.run_dir import RunDirError
from tests.test_train import tiny

# classroom_paa shrunk to seconds (tests/test_train.py), and every detection kept: after one epoch the
# scores are still below the default 0.05, and the category ids must be seen in detections.json
TINY = [o for o in tiny("unused") if not o.startswith("data.root")] + ["model.score_thr=0.0"]
CATEGORY_ID = {c: 10 * c + 3 for c in range(1, 13)}  # 13, 23, ..., 123: COCO-like gaps
STRATEGIES = ["fixed", "paa", "lad"]


def non_contiguous(root):
    """The classroom files with category ids 13, 23, ... and the first validation image without objects."""
    for split in ("train", "val"):
        path = root / "annotations" / f"instances_{split}.json"
        coco = json.loads(path.read_text())
        for category in coco["categories"]:
            category["id"] = CATEGORY_ID[category["id"]]
        first = coco["images"][0]["id"] if split == "val" else None
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != first]
        for annotation in coco["annotations"]:
            annotation["category_id"] = CATEGORY_ID[annotation["category_id"]]
        path.write_text(json.dumps(coco))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = make_classroom_dataset(tmp_path_factory.mktemp("data") / "tiny", 8, 4, seed=3, progress=False)
    return non_contiguous(root)


def run(data, out, **options):
    settings = dict(strategies=STRATEGIES, seeds=2, epochs=1, overrides=TINY, jobs=2, progress=False)
    return compare(data=data, out=out, **(settings | options))


@pytest.fixture(scope="module")
def compared(data, tmp_path_factory):
    """fixed, paa and lad, two seeds, one epoch, two runs at a time."""
    out = tmp_path_factory.mktemp("compare")
    return out, run(data, out)


def test_the_report_has_every_file_and_documented_key(compared):
    out, report = compared
    assert json.loads((out / "results.json").read_text()) == report
    assert set(report) == {"settings", "size_bins", "strategies", "figures"}
    assert list(report["strategies"]) == STRATEGIES
    assert report["settings"]["seeds"] == [0, 1] and report["settings"]["epochs"] == 1
    assert set(report["size_bins"]) == {"edges", "labels", "num_gts"}
    for name, entry in report["strategies"].items():
        summary = entry["summary"]
        for key in (
            "AP",
            "AP50",
            "AP75",
            "APs",
            "APm",
            "APl",
            "train_seconds",
            "pos_per_gt",
            "gts_without_pos",
        ):
            assert set(summary[key]) == {"mean", "std"}, (name, key)
        assert len(summary["level_share"]["mean"]) == 5
        assert [r["seed"] for r in entry["runs"]] == [0, 1]
        for record in entry["runs"]:
            assert record["state"] == "trained" and record["train_seconds"] > 0
            low_quality = {"low_quality_per_gt_by_size"} if name == "fixed" else set()  # fixed IoU's own step
            assert set(record["assignment"]) == {
                "pos_per_gt",
                "gts_without_pos",
                "pos_iou",
                "level_share",
                "pos_per_gt_by_size",
                *low_quality,
            }
            assert len(record["assignment"]["pos_per_gt_by_size"]) == len(report["size_bins"]["labels"])
            for ties, positives in zip(
                record["assignment"].get("low_quality_per_gt_by_size", []),
                record["assignment"]["pos_per_gt_by_size"],
                strict=False,
            ):
                assert ties is None or 0 <= ties <= positives  # a share of the positives, never more
            assert record["coco"]["APl"] is None  # nothing is large on 128 px images: pycocotools' -1
    assert set(report["figures"]) == {"ap", "loss_curves", "positives_vs_size", "level_share", "side_by_side"}
    for path in report["figures"].values():
        assert (out / path).stat().st_size > 5000
    markdown = (out / "results.md").read_text()
    assert "| lad |" in markdown and "figures/side_by_side.png" in markdown


def test_each_lad_run_learns_from_the_paa_run_of_its_seed(compared):
    out, report = compared
    for record in report["strategies"]["lad"]["runs"]:
        seed = record["seed"]
        assert record["teacher"] == f"paa/seed{seed}"
        saved = yaml.safe_load((out / "lad" / f"seed{seed}" / "config.yaml").read_text())
        assert saved["distill"]["teacher_checkpoint"] == str(out / "paa" / f"seed{seed}" / "checkpoint.pt")
        assert (saved["distill"]["mode"], saved["seed"]) == ("lad", seed)


def test_a_given_teacher_checkpoint_teaches_the_lad_run_without_a_paa_run(compared, data, tmp_path):
    """The paper's Table 3 setting: a trained network (here the other comparison's paa run) teaches."""
    out, _ = compared
    teacher = out / "paa" / "seed1" / "checkpoint.pt"
    report = run(data, tmp_path, strategies=["lad"], seeds=1, teacher=teacher)
    assert list(report["strategies"]) == ["lad"] and report["settings"]["teacher"] == str(teacher)
    saved = yaml.safe_load((tmp_path / "lad" / "seed0" / "config.yaml").read_text())
    assert saved["distill"]["teacher_checkpoint"] == str(teacher)
    assert f"the teacher is `{teacher}`" in (tmp_path / "results.md").read_text()
    with pytest.raises(ValueError, match="--teacher .*no such checkpoint"):
        run(data, tmp_path / "other", strategies=["lad"], teacher=tmp_path / "missing.pt")


def test_detections_carry_the_datasets_category_ids(compared):
    _, report = compared
    for entry in report["strategies"].values():
        for record in entry["runs"]:
            detections = json.loads(open(record["detections"]).read())
            assert detections and {d["category_id"] for d in detections} <= set(CATEGORY_ID.values())


def test_a_rerun_reuses_the_finished_runs(compared, data, capsys):
    """Through the command line's options and the demo benchmark, which runs ``lad-edu compare``."""
    out, report = compared
    checkpoints = {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/checkpoint.pt")}
    sets = [arg for o in TINY for arg in ("--set", o)]
    argv = ["--data", str(data), "--strategies", ",".join(STRATEGIES), "--seeds", "2", "--epochs", "1"]
    measured = bench_demo.main([*argv, "--out", str(out), *sets])
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == checkpoints  # nothing trained
    for name, entry in measured["report"]["strategies"].items():
        assert [r["state"] for r in entry["runs"]] == ["reused", "reused"]
        assert entry["summary"]["AP"] == report["strategies"][name]["summary"]["AP"]
    printed = capsys.readouterr().out
    assert printed.count("(reused)") == 6 and "| wall time |" in printed
    assert measured["memory_gib"]["bound"] > 0


def test_another_config_in_the_same_out_is_refused_naming_the_keys(compared, data):
    out, _ = compared
    with pytest.raises(RunDirError, match=r"holds a run of another config \(optim.epochs: 1 -> 2"):
        run(data, out, epochs=2)


def test_a_run_killed_midway_is_resumed(data, tmp_path):
    (spec,) = plan_runs(
        config="classroom_compare",  # compare's default, as run() below uses
        overrides=[f"data.root={data}", *TINY],
        strategies=["fixed"],
        seeds=1,
        epochs=1,
        out=tmp_path,
    )
    train(replace(spec.cfg, max_iters=1), spec.run_dir)  # one of its two iterations, then "killed"
    (spec.run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(spec.cfg), sort_keys=False))
    assert run_state(spec) == "resume"
    report = run(data, tmp_path, strategies=["fixed"], seeds=1, jobs=1)
    assert report["strategies"]["fixed"]["runs"][0]["state"] == "resumed"
    rows = [json.loads(line) for line in (spec.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r.get("global_iter")) for r in rows] == [("train", 1), ("train", 2), ("eval", None)]


def test_a_failed_run_is_named_and_the_runs_it_teaches_do_not_start(data, tmp_path):
    diverging = [*TINY, "optim.epochs=2", "optim.milestones=[1]", "optim.gamma=1e30"]  # lr x 1e30 in epoch 2
    failed = (
        r"paa/seed0: NonFiniteLossError: .*train.log\); lad/seed0: not started, its teacher paa/seed0 failed"
    )
    with pytest.raises(RunFailedError, match=failed):
        run(data, tmp_path, strategies=["lad"], seeds=1, epochs=None, jobs=1, overrides=diverging)


def test_bad_data_strategy_or_override_is_one_line_naming_it(data, tmp_path):
    with pytest.raises(ValueError, match=r"dataset .*nowhere: no annotation file .*lad-edu make-data --out"):
        run(tmp_path / "nowhere", tmp_path)
    with pytest.raises(ValueError, match=r"unknown strategy 'lda'; valid strategies: fixed, atss, paa, soft"):
        run(data, tmp_path, strategies=["fixed", "lda"])
    with pytest.raises(ConfigError, match="unknown config key 'optim.lrr'"):
        run(data, tmp_path, overrides=[*TINY, "optim.lrr=1"])
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_the_teacher_note_appears_only_when_a_strategy_had_a_teacher():
    from lad_edu.compare.report import markdown
    from lad_edu.reference import REFERENCE, reference_results

    with_teacher = markdown(reference_results())  # soft, lad, solad among the strategies
    assert "lad and solad label with their teacher" in with_teacher and "the teacher is" in with_teacher
    modern = markdown(reference_results(REFERENCE / "modern"))  # fixed ... hungarian: nobody had a teacher
    assert "teacher" not in modern and "| hungarian |" in modern
