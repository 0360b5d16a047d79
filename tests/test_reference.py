"""The shipped reference (``make reference``): complete, small, and its weights give the AP it records."""

import json

import pytest
import torch

from lad_edu import reference
from lad_edu.data.classroom import make_classroom_dataset
from lad_edu.train.checkpoint import load_run_checkpoint

REF = reference.REFERENCE


@pytest.fixture(scope="module")
def info():
    return json.loads((REF / "reference.json").read_text())


def test_the_weights_load_strictly_and_reproduce_their_recorded_val_ap(info, tmp_path):
    # the classroom validation split, written again from its seed (the training split is not needed)
    data = make_classroom_dataset(tmp_path / "classroom", num_train=0, num_val=100, progress=False)
    stats = reference.evaluate_reference(data=data)
    assert abs(100 * stats["AP"] - 100 * info["paa_val_AP_fp16"]) <= 0.5
    assert abs(100 * info["paa_val_AP_fp16"] - 100 * info["paa_val_AP_run"]) <= 0.5  # fp16 costs nothing
    paa_run = reference.reference_results()["strategies"]["paa"]["runs"][0]
    assert info["paa_val_AP_run"] == paa_run["coco"]["AP"]


def test_the_weights_are_fp16_and_at_most_8_mb():
    path = REF / "paa.pt"
    assert path.stat().st_size <= 8 * 2**20
    state = load_run_checkpoint(path)
    floats = [v for v in state["model"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert state["optimizer"] == {} and "partner" not in state


def test_every_strategy_ships_its_metrics_snapshots_and_figures():
    results = reference.reference_results()
    assert list(results["strategies"]) == list(reference.STRATEGIES)
    for name in reference.STRATEGIES:
        run = reference.reference_run(name)
        assert results["strategies"][name]["runs"][0]["run_dir"] == f"runs/{name}"
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert any(row["kind"] == "eval" for row in rows)
        assert (run / "config.yaml").is_file() and (run / "coco_stats.json").is_file()
        assert (run / "snapshots.jsonl").stat().st_size > 0
    for path in results["figures"].values():
        assert (REF / path).is_file()


def test_the_larger_student_learned_from_the_small_paa_network():
    root = REF / "larger_student"
    results = reference.reference_results(root)
    assert list(results["strategies"]) == ["paa", "lad"]
    assert results["settings"]["overrides"] == list(reference.LARGER_STUDENT)
    assert results["settings"]["teacher"].endswith("paa/seed0/checkpoint.pt")
    for name in ("paa", "lad"):
        assert (reference.reference_run(name, root) / "metrics.jsonl").is_file()


def test_the_modern_comparison_ships_every_rule_and_agrees_with_the_main_one_where_they_overlap(info):
    root = REF / "modern"
    results = reference.reference_results(root)
    assert list(results["strategies"]) == list(reference.MODERN) == info["modern"]
    for name in reference.MODERN:
        assert (reference.reference_run(name, root) / "snapshots.jsonl").stat().st_size > 0
    for path in results["figures"].values():
        assert (root / path).is_file()
    main = reference.reference_results()["strategies"]
    for name in ("fixed", "atss", "paa"):  # the same preset, seed and code: the same run, trained again
        assert results["strategies"][name]["runs"][0]["coco"] == main[name]["runs"][0]["coco"], name


def test_a_missing_reference_names_the_command_that_writes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make reference"):
        reference.reference_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="make reference"):
        reference.load_reference_detector(tmp_path)
    with pytest.raises(ValueError, match="has no 'nope' run"):
        reference.reference_run("nope")


def test_make_reference_writes_the_same_layout_at_tiny_size(tmp_path):
    """The producing command shrunk to seconds: every strategy, the larger student and the modern rules,
    1 epoch of 8 images."""
    from tests.test_compare import TINY

    data = make_classroom_dataset(tmp_path / "data", 8, 4, seed=3, progress=False)
    out = tmp_path / "reference"
    tiny = [*TINY, "optim.epochs=1", "optim.milestones=[]"]
    info = reference.build_reference(out=out, work=tmp_path / "work", jobs=2, data=data, overrides=tiny)
    assert info["strategies"] == list(reference.STRATEGIES) and info["modern"] == list(reference.MODERN)
    shipped = {p.relative_to(out) for p in out.rglob("*") if p.is_file()}
    assert shipped == {p.relative_to(REF) for p in REF.rglob("*") if p.is_file()}  # the shipped one's layout
    stats = reference.evaluate_reference(out, data)
    assert abs(stats["AP"] - info["paa_val_AP_fp16"]) < 1e-9  # what it records is what its weights give
    assert not list(tmp_path.glob(".reference.*"))  # the staging folder was renamed into place
