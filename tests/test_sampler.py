import json
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from lad_edu.data.coco import CocoDetection
from lad_edu.data.sampler import TALL, WIDE, GroupedBatchSampler, aspect_ratio_groups, sample_seed


def all_ranks(group_ids, num_replicas, epoch=0, **kwargs):
    """The batches of every rank for one epoch: ``[rank][j]``."""
    ranks = []
    for rank in range(num_replicas):
        sampler = GroupedBatchSampler(group_ids, num_replicas=num_replicas, rank=rank, **kwargs)
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == sampler.batches_per_epoch
        ranks.append(batches)
    return ranks


samplings = st.fixed_dictionaries(
    {
        "group_ids": st.lists(st.integers(0, 2), max_size=40),
        "batch_size": st.integers(1, 5),
        "num_replicas": st.integers(1, 4),
        "seed": st.integers(0, 2**16),
        "epoch": st.integers(0, 5),
        "shuffle": st.booleans(),
    }
)


@settings(max_examples=200, deadline=None)
@given(samplings)
def test_every_image_once_single_group_batches_equal_ranks(sampling):
    """drop_last=False: the ranks' batches, interleaved back, are a partition of the dataset + repeats."""
    group_ids, batch_size, num_replicas = (
        sampling["group_ids"],
        sampling["batch_size"],
        sampling["num_replicas"],
    )
    ranks = all_ranks(**sampling)
    assert len({len(batches) for batches in ranks}) == 1  # every rank the same number of batches
    merged = [ranks[j % num_replicas][j // num_replicas] for j in range(len(ranks[0]) * num_replicas)]
    for batch in merged:
        assert 1 <= len(batch) <= batch_size and len({group_ids[i] for i in batch}) == 1
    sizes = Counter(group_ids)
    num_real = sum(-(-n // batch_size) for n in sizes.values())  # full batches + one leftover per group
    assert sorted(i for batch in merged[:num_real] for i in batch) == list(range(len(group_ids)))
    assert len(merged) - num_real < num_replicas  # the padding: fewer batches than ranks...
    assert all(batch in merged[:num_real] for batch in merged[num_real:])  # ...repeating real ones
    assert all(len(batch) == batch_size for batch in merged[: sum(n // batch_size for n in sizes.values())])


@settings(max_examples=200, deadline=None)
@given(samplings)
def test_drop_last_gives_full_disjoint_batches_and_drops_less_than_a_batch_per_group_and_rank(sampling):
    group_ids, batch_size, num_replicas = (
        sampling["group_ids"],
        sampling["batch_size"],
        sampling["num_replicas"],
    )
    ranks = all_ranks(drop_last=True, **sampling)
    assert len({len(batches) for batches in ranks}) == 1
    seen = [i for batches in ranks for batch in batches for i in batch]
    assert len(seen) == len(set(seen))  # ranks disjoint, nothing repeated
    assert all(len(batch) == batch_size for batches in ranks for batch in batches)
    full_batches = sum(n // batch_size for n in Counter(group_ids).values())
    assert len(ranks[0]) == full_batches // num_replicas


@settings(max_examples=100, deadline=None)
@given(samplings, st.data())
def test_resuming_at_batch_k_yields_the_tail(sampling, data):
    num_replicas = sampling.pop("num_replicas")
    rank, epoch = data.draw(st.integers(0, num_replicas - 1)), sampling.pop("epoch")
    sampler = GroupedBatchSampler(num_replicas=num_replicas, rank=rank, **sampling)
    sampler.set_epoch(epoch)
    whole = list(sampler)
    k = data.draw(st.integers(0, len(whole)))
    sampler.set_epoch(epoch, start_batch=k)
    assert list(sampler) == whole[k:] and len(sampler) == len(whole) - k
    sampler.set_epoch(epoch + 1)  # the next epoch starts from its beginning again
    assert len(sampler) == len(whole)
    with pytest.raises(ValueError, match="start_batch"):
        sampler.set_epoch(epoch, start_batch=len(whole) + 1)


def test_same_seed_and_epoch_same_batches_otherwise_different():
    group_ids = torch.randint(0, 2, (100,), generator=torch.Generator().manual_seed(0))

    def batches(seed, epoch):
        sampler = GroupedBatchSampler(group_ids, batch_size=4, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert batches(0, 3) == batches(0, 3)
    assert batches(0, 3) != batches(0, 4) and batches(0, 3) != batches(1, 3)
    # the generator is seeded with seed + epoch, as torch's DistributedSampler does: (1, 3) is (0, 4)
    assert batches(1, 3) == batches(0, 4)


def test_worked_example_of_the_docstring_and_grouping_off():
    ranks = all_ranks([0, 0, 0, 1, 1], num_replicas=2, batch_size=2, shuffle=False)
    assert ranks == [[[0, 1], [2]], [[3, 4], [0, 1]]]
    plain = GroupedBatchSampler(torch.zeros(7, dtype=torch.long), batch_size=3, shuffle=False)
    assert list(plain) == [[0, 1, 2], [3, 4, 5], [6]]  # all one group: ordinary batching
    assert (
        list(GroupedBatchSampler([], batch_size=3)) == [] and len(GroupedBatchSampler([], batch_size=3)) == 0
    )


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        GroupedBatchSampler([0, 1], batch_size=0)
    with pytest.raises(ValueError, match="rank"):
        GroupedBatchSampler([0, 1], batch_size=1, num_replicas=2, rank=2)


def test_drives_a_dataloader():
    sampler = GroupedBatchSampler([0, 1] * 5, batch_size=2, seed=3)
    sampler.set_epoch(2)
    loader = torch.utils.data.DataLoader(list(range(10)), batch_sampler=sampler, collate_fn=list)
    assert list(loader) == list(sampler) and len(loader) == len(sampler)


def test_sample_seed_is_pure_and_mixes_all_three_inputs():
    assert sample_seed(0, 1, 2) == sample_seed(0, 1, 2)
    seeds = {sample_seed(s, e, i) for s in range(3) for e in range(3) for i in range(3)}
    assert len(seeds) == 27 and all(0 <= s < 2**64 for s in seeds)  # also (0, 1, 2) vs (1, 0, 2) etc.
    draw = torch.rand(3, generator=torch.Generator().manual_seed(sample_seed(0, 1, 2)))
    assert torch.equal(draw, torch.rand(3, generator=torch.Generator().manual_seed(sample_seed(0, 1, 2))))
    with pytest.raises(ValueError, match=">= 0"):
        sample_seed(0, -1, 2)


def test_aspect_ratio_groups_read_the_annotation_file_not_the_images(tmp_path):
    (tmp_path / "val").mkdir()
    (tmp_path / "annotations").mkdir()
    sizes = {5: (60, 40), 2: (40, 60), 9: (50, 50)}  # id: (width, height); wide, tall, square
    images = [{"id": i, "file_name": f"{i}.png", "width": w, "height": h} for i, (w, h) in sizes.items()]
    for image in images:
        Image.fromarray(np.zeros((image["height"], image["width"], 3), dtype=np.uint8)).save(
            tmp_path / "val" / image["file_name"]
        )
    data = {"images": images, "annotations": [], "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(data))
    dataset = CocoDetection(tmp_path, "val")
    for image in images:
        (tmp_path / "val" / image["file_name"]).unlink()  # no image is opened
    assert aspect_ratio_groups(dataset).tolist() == [TALL, WIDE, WIDE]  # dataset order: ids 2, 5, 9
    del dataset.coco.imgs[9]["height"]
    with pytest.raises(ValueError, match="image 9 has no 'width'/'height'"):
        aspect_ratio_groups(dataset)
