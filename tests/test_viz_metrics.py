"""A run's metrics: the reader (also while the run writes) and the figure, from a real run and by hand."""

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lad_edu.data.classroom import make_classroom_dataset  # noqa: E402
from lad_edu.train import load_config, train  # noqa: E402
from lad_edu.train.metrics import read_metrics  # noqa: E402
from lad_edu.viz import plot_run_metrics  # noqa: E402
from tests.test_train import tiny  # noqa: E402


def write_rows(run_dir, rows, tail=""):
    text = "".join(json.dumps(row) + "\n" for row in rows) + tail
    (run_dir / "metrics.jsonl").write_text(text)


TRAIN = [
    {"kind": "train", "epoch": 1, "global_iter": 1, "lr": 0.01, "loss_cls": 1.0, "loss_bbox": 0.5},
    {"kind": "train", "epoch": 1, "global_iter": 2, "lr": 0.02, "loss_cls": 0.8, "loss_bbox": None},
]
EVAL = [
    {"kind": "eval", "epoch": 1, "AP": 0.25, "AP50": -1.0},
    {"kind": "eval", "network": 2, "epoch": 1, "AP": 0.125, "AP50": 0.5},
]


# the reader


def test_rows_of_one_kind_or_all_in_the_order_written(tmp_path):
    write_rows(tmp_path, [TRAIN[0], EVAL[0], TRAIN[1]])
    assert read_metrics(tmp_path) == [TRAIN[0], EVAL[0], TRAIN[1]]
    assert read_metrics(tmp_path, "train") == TRAIN
    assert read_metrics(tmp_path, "eval") == [EVAL[0]]
    assert read_metrics(tmp_path / "not yet", "train") == []  # before the run wrote its first row
    with pytest.raises(ValueError, match=r"kind must be one of \['train', 'eval'\] or None, got 'val'"):
        read_metrics(tmp_path, "val")


def test_a_half_written_last_line_is_skipped_until_it_is_complete(tmp_path):
    line = json.dumps(TRAIN[1]) + "\n"
    write_rows(tmp_path, [TRAIN[0]], tail=line[:20])  # the engine is writing the second row
    assert read_metrics(tmp_path) == [TRAIN[0]]
    write_rows(tmp_path, [TRAIN[0]], tail=line)
    assert read_metrics(tmp_path) == TRAIN


def test_a_broken_line_before_the_last_is_an_error_naming_it(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        json.dumps(TRAIN[0]) + "\n{not json\n" + json.dumps(TRAIN[1]) + "\n"
    )
    with pytest.raises(ValueError, match=r"metrics\.jsonl: line 2 is not JSON"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text(json.dumps(TRAIN[0]) + "\n{not json\n")  # ended by a newline
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_metrics(tmp_path)


# the figure


def lines_by_label(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines()}


def test_hand_written_rows_draw_nulls_as_gaps_and_coco_minus_one_as_missing():
    fig = plot_run_metrics([*TRAIN, *EVAL], keys=["loss", "lr", ("AP", "AP50"), "pos_iou"])
    losses, lr, ap, empty = fig.axes[:4]
    drawn = lines_by_label(losses)
    assert list(drawn) == ["loss_cls", "loss_bbox", "total"]
    assert drawn["loss_cls"].get_xdata().tolist() == [1, 2]
    assert np.isnan(drawn["loss_bbox"].get_ydata()[1])  # null: a gap
    assert drawn["total"].get_ydata().tolist() == [1.5, 0.8]  # the terms that were logged
    assert lines_by_label(lr)["lr"].get_ydata().tolist() == [0.01, 0.02]
    drawn = lines_by_label(ap)
    assert drawn["AP"].get_ydata().tolist() == [25.0] and drawn["AP"].get_xdata().tolist() == [1]
    assert np.isnan(drawn["AP50"].get_ydata()[0])  # COCOeval's -1: nothing to measure
    assert drawn["AP (network 2)"].get_ydata().tolist() == [12.5]  # CoLAD's second network
    assert drawn["AP (network 2)"].get_linestyle() == "--"
    assert not empty.get_lines() and empty.texts[0].get_text() == "nothing logged yet"
    assert ap.get_xlabel() == "epoch" and losses.get_xlabel() == "iteration"


def test_shares_are_drawn_in_percent_and_the_layout_holds_before_any_row():
    rows = [{"kind": "train", "global_iter": 5, "gts_without_pos": 0.25, "pos_share_l0": 0.5}]
    fig = plot_run_metrics(rows, keys=["gts_without_pos", ("pos_share_l0", "pos_share_l1")])
    assert fig.axes[0].get_lines()[0].get_ydata().tolist() == [25.0]
    shares = lines_by_label(fig.axes[1])
    assert shares["pos_share_l0"].get_ydata().tolist() == [50.0] and np.isnan(
        shares["pos_share_l1"].get_ydata()[0]
    )
    empty = plot_run_metrics([])  # a live view's first frame: the default six panels, each saying so
    visible = [ax for ax in empty.axes if ax.get_visible()]
    assert len(visible) == 6 and all(ax.texts[0].get_text() == "nothing logged yet" for ax in visible)


def test_a_real_run_is_drawn_from_its_metrics_file(tmp_path):
    data = make_classroom_dataset(tmp_path / "data", 8, 4, seed=3, progress=False)
    train(load_config("classroom_paa", tiny(data, "optim.epochs=2")), tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    fig = plot_run_metrics(rows)
    losses, lr, pos_per_gt, without, iou, ap = fig.axes
    train_rows = [row for row in rows if row["kind"] == "train"]
    assert len(train_rows) == 4 and len(rows) == 6  # 2 epochs of 2 iterations, an evaluation after each
    assert lines_by_label(losses)["loss_cls"].get_xdata().tolist() == [1, 2, 3, 4]
    assert set(lines_by_label(losses)) == {"loss_cls", "loss_bbox", "loss_iou", "total"}
    assert lines_by_label(pos_per_gt)["pos_per_gt"].get_ydata().tolist() == [
        r["pos_per_gt"] for r in train_rows
    ]
    assert lines_by_label(ap)["AP"].get_xdata().tolist() == [1, 2]
    fig.savefig(tmp_path / "metrics.png")
    assert (tmp_path / "metrics.png").stat().st_size > 10_000
