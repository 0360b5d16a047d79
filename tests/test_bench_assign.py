"""The prediction-based rows of benchmarks/bench_assign.py on a tiny scale: they run, their MMDetection
references agree with the plain-loop transcriptions of tests/reference.py, and the memory is measured.

Timings are not checked (a shared machine makes them anything); agreement and memory are deterministic.
"""

import pytest
import torch

from benchmarks.bench_assign import (
    MEMORY_COLUMNS,
    PREDICTION_COLUMNS,
    PREDICTION_RULES,
    bench_memory_bound,
    bench_rule,
    hungarian_mmdet,
    measured,
    print_table,
    same_result,
    simota_mmdet,
    synthetic_batch,
    tal_mmdet,
)
from lad_edu.assign import build_assigner
from tests.reference import hungarian_loop, simota_reference, tal_mmdet_loop

TINY = (128, 160)  # single() anchors: 320 + 80 + 20 + 6 + 2 = 428


@pytest.fixture(scope="module")
def batch():
    return synthetic_batch(TINY, num_gts=6, num_images=2, device="cpu")


def assign(rule, batch):
    args = (batch.anchors, batch.num_level_anchors, batch.gt_boxes, batch.gt_labels, batch.predictions)
    return build_assigner(rule).assign_batch(*args)


@pytest.mark.parametrize("rule", PREDICTION_RULES)
def test_the_synthetic_predictions_give_every_rule_positives(batch, rule):
    for result in assign(rule, batch):
        assert (result.positives_per_gt() > 0).sum() >= 3  # at least half the GTs get an anchor


def test_mmdet_references_match_the_plain_loop_transcriptions(batch):
    """The benchmark's vectorised MMDetection code labels like tests/reference.py's loops (continuous random
    data: no exact ties for torch.topk to break its own way)."""
    logits, boxes = batch.predictions.cls_logits, batch.predictions.boxes
    for b, (gts, labels) in enumerate(zip(batch.gt_boxes, batch.gt_labels, strict=True)):
        numpy_args = (logits[b].sigmoid().numpy(), boxes[b].numpy(), batch.anchors.numpy(), gts.numpy())
        loop_tal = tal_mmdet_loop(*numpy_args, labels.numpy())[0]
        assert tal_mmdet(batch.anchors, logits[b], boxes[b], gts, labels).tolist() == loop_tal.tolist()
        loop_simota = simota_reference(batch.priors, logits[b].sigmoid(), boxes[b], gts, labels)[0]
        assert simota_mmdet(batch.priors, logits[b], boxes[b], gts, labels).equal(loop_simota)
        loop_hungarian = hungarian_loop(logits[b].numpy(), boxes[b].numpy(), gts, labels, TINY)[0]
        assert hungarian_mmdet(logits[b], boxes[b], gts, labels, TINY).tolist() == loop_hungarian.tolist()


@pytest.mark.parametrize("rule", PREDICTION_RULES)
def test_bench_rule_reports_agreement_with_mmdetection(batch, rule):
    row = bench_rule(rule, batch, "cpu", repeats=1)
    assert row["same"] == "2/2"
    assert row["calls"] == 1
    assert row["anchors"] == 428
    assert row["MiB"] > 0 and row["mmdet MiB"] > 0


def test_measured_gives_the_peak_of_the_torch_allocations():
    def three_at_once():
        a = torch.ones(2**20)  # 4 MiB
        b = torch.ones(2**20)  # 8 MiB live
        return float((a + b).sum())  # a + b: 12 MiB live, then a few bytes for the sum

    result = measured(three_at_once, "cpu")
    assert result.value == 2.0 * 2**20
    assert 12 <= result.mib < 12.01
    assert result.seconds > 0


def test_the_memory_bound_lowers_the_peak_and_keeps_the_results(batch):
    # 2 images x 6 GTs x 428 anchors; max_pairs 1000: one image (2568 triples) is too big, so pieces of
    # 1000 // 428 = 2 GTs of one image: 3 per image, 6 in all (the default: one piece)
    rows = bench_memory_bound("cpu", batch=batch, small_max_pairs=1000)
    assert [row["pieces"] for row in rows] == [1, 6] * len(PREDICTION_RULES)
    for default, small in zip(rows[::2], rows[1::2], strict=True):
        assert small["equal"] == "2/2"
        assert small["MiB"] < default["MiB"]


def test_same_result_compares_gt_inds_and_quality(batch):
    tal, simota, hungarian = (assign(rule, batch)[0] for rule in PREDICTION_RULES)
    assert same_result(tal, tal) and same_result(hungarian, hungarian)
    assert not same_result(tal, simota)  # different positives
    assert not same_result(hungarian, tal)  # quality None against a tensor


def test_tables_print_every_row(batch, capsys):
    row = {"scale": "tiny", "GTs": 6, "device": "cpu", **bench_rule("tal", batch, "cpu", repeats=1)}
    print_table([row], PREDICTION_COLUMNS)
    print_table(bench_memory_bound("cpu", batch=batch, small_max_pairs=1000)[:2], MEMORY_COLUMNS)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 + 4
    assert "| ratio |" in lines[0] and "2/2" in lines[2]
    assert f"{row['ms'] / row['mmdet ms']:.2f}" in lines[2]
    assert lines[-1].rstrip().endswith("2/2           |")
