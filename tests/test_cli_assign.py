"""``lad-edu assign`` draws exactly the labels training gives the same image with the same weights."""

import contextlib
import json
import shutil

import torch

from lad_edu.cli import assignment, main
from lad_edu.data.transforms import collate
from lad_edu.model import build_detector
from lad_edu.model.checkpoint import load_strict
from lad_edu.train import load_config, train
from lad_edu.train.checkpoint import load_run_checkpoint
from lad_edu.train.config import config_from_dict
from lad_edu.train.learner import Learner, Networks
from tests.test_train import tiny, tiny_data  # noqa: F401 (a fixture)


def with_a_crowd_region(data, out):
    """A copy of ``data`` whose validation image 0 also has a crowd region (its top-left quarter)."""
    shutil.copytree(data, out)
    path = out / "annotations" / "instances_val.json"
    coco = json.loads(path.read_text())
    crowd = {
        "id": 10_000,
        "image_id": 0,
        "category_id": 1,
        "bbox": [0, 0, 64, 64],
        "area": 4096,
        "iscrowd": 1,
    }
    coco["annotations"].append(crowd)
    path.write_text(json.dumps(coco))
    return out


def training_assignment(checkpoint, image, target, monkeypatch):
    """The labels :meth:`Learner.step` trains with on ``(image, target)``, the network in eval mode."""
    import lad_edu.train.learner as learner_module

    state = load_run_checkpoint(checkpoint)
    cfg = config_from_dict(state["config"])
    model = build_detector(cfg.model, len(state["category_ids"]))
    load_strict(model, state["model"], str(checkpoint))
    networks = Networks(model).eval()  # the CLI scores with the network in eval mode
    learner = Learner(cfg, networks, networks, None)
    seen = []
    losses = learner_module.detection_losses

    def recording_losses(*args, **kwargs):
        seen.append(args[3])  # the assignments the losses are computed on
        return losses(*args, **kwargs)

    monkeypatch.setattr(learner_module, "detection_losses", recording_losses)
    images, targets = collate([(image, target)])
    learner.step(images.float(), targets, contextlib.nullcontext)
    return learner, seen[0][0]


def test_the_cli_draws_the_assignment_training_uses(tiny_data, tmp_path, monkeypatch):  # noqa: F811
    data = with_a_crowd_region(tiny_data, tmp_path / "data")
    options = ["assign.keep_single_candidate=true", "assign.all_if_no_fg=true", "assign.topk=6"]
    run = tmp_path / "run"
    train(load_config("classroom_paa", tiny(data, "max_iters=1", *options)), run)
    checkpoint = run / "checkpoint.pt"

    drawn = assignment(checkpoint=checkpoint, index=0)
    learner, trained_on = training_assignment(checkpoint, drawn.image, drawn.target, monkeypatch)
    assert torch.equal(drawn.result.gt_inds, trained_on.gt_inds)
    assert torch.equal(drawn.result.labels, trained_on.labels)
    assert drawn.result.num_pos > 0
    # both with the run's options, and its crowd region: PAA ignores nothing, the crowd region does
    paa = learner.assigner
    assert (paa.topk, paa.keep_single_candidate, paa.all_if_no_fg) == (6, True, True)
    assert len(drawn.target["crowd_boxes"]) == 1 and bool(drawn.result.ignored.any())

    other = assignment(checkpoint=checkpoint, index=0, assigner="atss")  # --assigner picks another
    assert other.cfg.assign.assigner == "atss" and not torch.equal(other.result.gt_inds, drawn.result.gt_inds)
    png = tmp_path / "a.png"
    main(["assign", "--checkpoint", str(checkpoint), "--out", str(png)])
    assert png.read_bytes()[:4] == b"\x89PNG"
