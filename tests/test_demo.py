from lad_edu import demo
from lad_edu.anchors import single
from lad_edu.scenes import DEMO_IMAGE_SIZE


def test_the_demo_table_supports_what_its_explanation_says():
    rows, summary = demo.assignment_table()
    by_name = {row["object"]: row for row in rows}
    for name in ("dot", "small digit", "thin bar"):  # no anchor reaches 0.5: only low-quality positives
        row = by_name[name]
        assert row["best IoU"] < 0.5 and row["fixed pos"] == row["low-quality"] > 0
    for name in ("digit", "square digit", "overlapping digit", "large digit"):
        row = by_name[name]
        assert row["best IoU"] >= 0.5 and row["fixed pos"] > row["low-quality"] == 0
    assert by_name["dot"]["ATSS pos"] == 0
    assert by_name["small digit"]["ATSS pos"] > 0 and by_name["thin bar"]["ATSS pos"] > 0
    assert summary["ignored by fixed IoU (0.4 <= IoU < 0.5)"] > 0


def test_both_rules_label_the_same_anchors():
    _, summary = demo.assignment_table()
    anchors, _ = single()(DEMO_IMAGE_SIZE)
    assert summary["anchors (both rules)"].startswith(f"{len(anchors)},")


def test_main_prints_the_table(capsys):
    demo.main()
    out = capsys.readouterr().out
    assert "ATSS thr" in out and "thin bar" in out and "the same anchors for both rules" in out
