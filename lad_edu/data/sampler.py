"""Batches of images of one shape, the same on every run and every rank, resumable mid-epoch.

A batch is padded to its largest image (:func:`lad_edu.data.transforms.collate`), so mixing a wide and a
tall image wastes about half the pixels. torchvision's ``references/detection/group_by_aspect_ratio.py``
therefore batches wide images with wide ones and tall with tall (:class:`GroupedBatchSampler` follows
its buffering). Ours adds what a training run needs:

* **Deterministic**: epoch ``e``'s order is ``torch.randperm`` drawn from
  ``torch.Generator().manual_seed(seed + e)``, the same on every rank, so the ranks agree on one list of
  batches without talking to each other.
* **DDP-aware**: rank ``r`` of ``R`` takes batches ``r, r + R, r + 2R, ...``; every rank gets the same
  number of batches, as DDP needs (a rank with one batch more waits forever in ``all_reduce``).
* **Resumable**: ``set_epoch(e, start_batch=k)`` starts at the rank's batch ``k``: the batches are lists
  of indices, so skipping them opens no image.
* **Reproducible augmentation**: :func:`sample_seed` gives image ``index`` of epoch ``e`` its own seed,
  for the ``generator`` of :class:`lad_edu.data.transforms.TrainTransform`; it does not depend on the
  batch, the rank or the number of ranks, so a resumed or rescaled run draws the same augmentations.

>>> sampler = GroupedBatchSampler([0, 1, 0, 1, 0], batch_size=2, shuffle=False)
>>> list(sampler)  # images 0, 2 are wide, 1, 3 tall; the leftovers close the epoch
[[0, 2], [1, 3], [4]]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["WIDE", "TALL", "aspect_ratio_groups", "GroupedBatchSampler", "sample_seed"]

WIDE, TALL = 0, 1  # group ids: width >= height, width < height


def aspect_ratio_groups(dataset) -> Tensor:
    """Group id of every image of a :class:`~lad_edu.data.CocoDetection`: :data:`WIDE` or :data:`TALL`.

    Read from the annotation file's ``width`` and ``height`` (as torchvision's
    ``_compute_aspect_ratios_coco_dataset``), so no image is opened.

    Returns:
        ``[len(dataset)]`` long, in the dataset's order (``dataset.image_ids``).
    """
    groups = []
    for image_id in dataset.image_ids:
        info = dataset.coco.imgs[image_id]
        if "width" not in info or "height" not in info:
            raise ValueError(
                f"{dataset.annotation_file}: image {image_id} has no 'width'/'height'; "
                "aspect-ratio grouping reads them from the annotation file"
            )
        groups.append(WIDE if info["width"] >= info["height"] else TALL)
    return torch.tensor(groups, dtype=torch.long)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of the random augmentation of image ``index`` in ``epoch``: a pure function.

    Mixed by numpy's ``SeedSequence`` (a hash, so nearby inputs give unrelated seeds, unlike
    ``seed + epoch + index``). Use it as ``torch.Generator().manual_seed(sample_seed(seed, epoch, i))``.

    Returns:
        An int in ``[0, 2**64)``.

    >>> sample_seed(0, 1, 5) == sample_seed(0, 1, 5) != sample_seed(0, 2, 5)
    True
    """
    if min(seed, epoch, index) < 0:
        raise ValueError(f"seed, epoch and index must be >= 0, got {seed}, {epoch}, {index}")
    return int(np.random.SeedSequence((seed, epoch, index)).generate_state(1, np.uint64)[0])


class GroupedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of dataset indices whose images share a group (e.g. :func:`aspect_ratio_groups`).

    Args:
        group_ids: ``[N]`` group of each dataset index; all zeros turns grouping off.
        batch_size: images per batch (per rank).
        seed: the shuffling seed; epoch ``e`` uses ``seed + e``.
        shuffle: if False, indices are taken in order (still grouped).
        num_replicas, rank: the number of DDP processes and this one's rank.
        drop_last: what to do with the ends that do not divide evenly (see below).

    One epoch, for every rank alike:

    1. Walk the permutation; put each index in its group's buffer; a full buffer is the next batch
       (torchvision's ``GroupedBatchSampler.__iter__``).
    2. Leftover buffers (fewer than ``batch_size``): ``drop_last=False`` appends them as smaller
       batches, one per group in increasing group id, so every image is seen exactly once;
       ``drop_last=True`` drops them. (torchvision instead fills them up with repeated images.)
    3. Split the batch list over the ranks, batch ``j`` to rank ``j % num_replicas``. If the count does
       not divide: ``drop_last=False`` repeats batches from the start of the list (as
       ``DistributedSampler`` repeats indices), ``drop_last=True`` drops the last ones.

    Worked example: groups ``[0, 0, 0, 1, 1]``, ``batch_size=2``, no shuffle, two ranks: the batches are
    ``[0, 1]``, ``[3, 4]``, ``[2]``, padded with ``[0, 1]``; rank 0 gets ``[0, 1], [2]``, rank 1
    ``[3, 4], [0, 1]``.

    Padding repeats images. For training that is harmless; an evaluation that gathers detections from
    all ranks must drop the repeats (or run on one rank), or COCOeval counts them as false positives.
    """

    def __init__(
        self,
        group_ids: Sequence[int] | Tensor,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas), got rank {rank} of {num_replicas}")
        self.group_ids = torch.as_tensor(group_ids, dtype=torch.long).reshape(-1)
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.num_replicas, self.rank, self.drop_last = num_replicas, rank, drop_last
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        """Batches each rank gets in a whole epoch (known from the group sizes, without shuffling)."""
        sizes = torch.bincount(self.group_ids).tolist() if len(self.group_ids) else []
        full = sum(n // self.batch_size for n in sizes)
        partial = 0 if self.drop_last else sum(n % self.batch_size > 0 for n in sizes)
        total, ranks = full + partial, self.num_replicas
        return total // ranks if self.drop_last else -(-total // ranks)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Use epoch ``epoch``'s order, and start at this rank's batch ``start_batch`` (to resume)."""
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start_batch must be in [0, {self.batches_per_epoch}], got {start_batch}")
        self.epoch, self.start_batch = epoch, start_batch

    def _all_batches(self) -> list[list[int]]:
        """This epoch's batches of all ranks, in order, padded or cut to a multiple of ``num_replicas``."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(self.group_ids), generator=generator)
        else:
            order = torch.arange(len(self.group_ids))
        buffers: dict[int, list[int]] = {}
        batches = []
        for index, group in zip(order.tolist(), self.group_ids[order].tolist(), strict=True):
            buffer = buffers.setdefault(group, [])
            buffer.append(index)
            if len(buffer) == self.batch_size:
                batches.append(buffer)
                buffers[group] = []
        if self.drop_last:
            return batches[: len(batches) // self.num_replicas * self.num_replicas]
        batches += [buffers[group] for group in sorted(buffers) if buffers[group]]
        padding = -len(batches) % self.num_replicas
        return batches + [batches[i % len(batches)] for i in range(padding)]

    def __iter__(self) -> Iterator[list[int]]:
        mine = self._all_batches()[self.rank :: self.num_replicas]
        yield from mine[self.start_batch :]

    def __len__(self) -> int:
        """Batches the next iteration yields: the epoch's, less the ``start_batch`` skipped."""
        return self.batches_per_epoch - self.start_batch
