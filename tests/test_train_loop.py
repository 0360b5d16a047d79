"""The engine's parts on their own: a run is built, trained an epoch, saved and restored; a diverged step
raises in every process."""

import contextlib
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed
import torch.multiprocessing

from lad_edu.data.classroom import make_classroom_dataset
from lad_edu.train import load_config, train
from lad_edu.train.checkpoint import load_checkpoint
from lad_edu.train.distributed import Dist
from lad_edu.train.engine import (
    LogWindow,
    MetricsLog,
    NonFiniteLossError,
    build_run,
    restore_run_state,
    save_run_state,
    step_losses,
    train_one_epoch,
)
from lad_edu.train.learner import Learner
from tests.test_train import tiny, train_losses

CPU = Dist(rank=0, world_size=1, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_classroom_dataset(tmp_path_factory.mktemp("data") / "tiny", 8, 4, seed=3, progress=False)


def test_a_run_is_built_trained_an_epoch_saved_and_restored(data, tmp_path):
    cfg = load_config("classroom_paa", tiny(data))  # 8 images in batches of 4: 2 iterations an epoch
    run = build_run(cfg, tmp_path, CPU)
    assert (run.epoch, run.iteration, run.iters_per_epoch, run.global_iter) == (0, 0, 2, 0)
    with MetricsLog(tmp_path, enabled=True) as log:
        train_one_epoch(run, log, LogWindow())
    assert (run.epoch, run.iteration, run.global_iter) == (0, 2, 2)  # fit() moves on to the next epoch
    assert [(r["epoch"], r["iter"], r["global_iter"]) for r in train_losses(tmp_path)] == [
        (1, 1, 1),
        (1, 2, 2),
    ]

    save_run_state(run)
    restored = build_run(cfg, tmp_path, CPU)
    restore_run_state(restored)
    assert (restored.epoch, restored.iteration) == (0, 2)
    weights, loaded = run.networks.state_dict(), restored.networks.state_dict()
    assert all(torch.equal(weights[key], loaded[key]) for key in weights)
    assert restored.optimization.scheduler.last_epoch == 2  # the learning rate of iteration 3 is next


def test_max_iters_stops_within_the_epoch(data, tmp_path):
    run = build_run(load_config("classroom_paa", tiny(data, "max_iters=1")), tmp_path, CPU)
    with MetricsLog(tmp_path, enabled=False) as log:
        train_one_epoch(run, log, LogWindow())
    assert (run.iteration, run.reached_max_iters, run.finished) == (1, True, True)


def test_a_step_with_non_finite_predictions_stops_the_run_saying_so(data, tmp_path, monkeypatch):
    step, calls = Learner.step, []

    def diverging_at_the_third_step(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise FloatingPointError("the predictions of network 1 are not finite")
        return step(self, *args)

    monkeypatch.setattr(Learner, "step", diverging_at_the_third_step)
    message = (
        r"^non-finite loss at epoch 2, iteration 1 \(the predictions of network 1 are not finite\); "
        rf"the last good checkpoint {tmp_path / 'checkpoint.pt'} is kept"
    )
    with pytest.raises(NonFiniteLossError, match=message):
        train(load_config("classroom_paa", tiny(data, "optim.epochs=2", "eval_every=0")), tmp_path)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert (state["epoch"], state["iter"]) == (1, 0)  # the end of epoch 1, the last good position


def _step_where_rank_1_diverges(rank: int, port: int, said) -> None:
    """One process of two: rank 1's step raises FloatingPointError, rank 0's loss is finite."""
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2
    )

    def step(images, targets, autocast):
        if rank == 1:
            raise FloatingPointError("the predictions of network 1 are not finite")
        return torch.tensor(1.0), {"loss_cls": 1.0}, {}

    run = SimpleNamespace(
        learner=SimpleNamespace(step=step),
        dist=Dist(rank, 2, torch.device("cpu")),
        autocast=contextlib.nullcontext,
        epoch=0,
        iteration=4,
        checkpoint_path=Path("checkpoint.pt"),
    )
    try:
        step_losses(run, torch.zeros(1, 3, 32, 32), [{}])
        said.put((rank, "trained on"))
    except NonFiniteLossError as error:
        said.put((rank, str(error).split(";")[0]))
    finally:
        torch.distributed.destroy_process_group()


def test_a_step_that_diverges_in_one_process_stops_every_process():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    said = torch.multiprocessing.get_context("spawn").SimpleQueue()
    torch.multiprocessing.spawn(_step_where_rank_1_diverges, args=(port, said), nprocs=2, join=True)
    assert dict(said.get() for _ in range(2)) == {
        0: "non-finite loss at epoch 1, iteration 5 (in another process)",
        1: "non-finite loss at epoch 1, iteration 5 (the predictions of network 1 are not finite)",
    }
