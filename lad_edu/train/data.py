"""The training and evaluation loaders: COCO-layout images, the recipe's transforms, reproducible batches.

Reproducibility without shared random state: the order of the batches comes from ``(seed, epoch)``
(:class:`lad_edu.data.sampler.GroupedBatchSampler`) and each image's random resize and flip from
``(seed, epoch, index)`` (:func:`lad_edu.data.sampler.sample_seed`). The same run therefore sees the same
batches however many loader workers it uses, and a resumed run continues with exactly the batches it
would have seen.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from lad_edu.data.coco import CocoDetection
from lad_edu.data.sampler import GroupedBatchSampler, aspect_ratio_groups, sample_seed
from lad_edu.data.transforms import EvalTransform, TrainTransform, collate
from lad_edu.train.config import ConfigError, DataConfig
from lad_edu.train.distributed import Dist

__all__ = ["Transformed", "eval_loader", "load_datasets", "train_loader"]


class Transformed(Dataset):
    """A dataset with a transform applied; with a ``seed``, the transform's randomness is drawn from
    ``(seed, epoch, index)`` (set :attr:`epoch` before each epoch)."""

    def __init__(self, dataset: CocoDetection, transform, seed: int | None = None):
        self.dataset, self.transform, self.seed = dataset, transform, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, target = self.dataset[index]
        if self.seed is None:
            return self.transform(image, target)
        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, index))
        return self.transform(image, target, generator)


def load_datasets(cfg: DataConfig) -> tuple[CocoDetection, CocoDetection]:
    """The train and validation splits of ``cfg.root``; both must have the same categories."""
    train = CocoDetection(cfg.root, cfg.train_split, min_size=cfg.min_box_size)
    val = CocoDetection(cfg.root, cfg.val_split, min_size=cfg.min_box_size)
    if train.category_ids != val.category_ids:
        raise ConfigError(
            f"{train.annotation_file} and {val.annotation_file} list different categories "
            f"({train.category_ids} vs {val.category_ids}); a detector needs one label set"
        )
    return train, val


def train_loader(dataset: CocoDetection, cfg: DataConfig, seed: int, dist: Dist) -> DataLoader:
    """Shuffled batches of ``cfg.batch_size`` images per process, grouped by aspect ratio when asked."""
    groups = (
        aspect_ratio_groups(dataset)
        if cfg.aspect_ratio_grouping
        else torch.zeros(len(dataset), dtype=torch.long)
    )
    sampler = GroupedBatchSampler(
        groups, cfg.batch_size, seed=seed, shuffle=True, num_replicas=dist.world_size, rank=dist.rank
    )
    transform = TrainTransform(cfg.short_sides, cfg.max_size, cfg.flip_prob)
    return DataLoader(
        Transformed(dataset, transform, seed),
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.num_workers,
        pin_memory=dist.device.type == "cuda",
    )


def eval_loader(dataset: CocoDetection, cfg: DataConfig, dist: Dist) -> DataLoader:
    """This process's share of the images (every ``world_size``-th), in order, resized for testing."""
    indices = list(range(dist.rank, len(dataset), dist.world_size))
    batches = [indices[i : i + cfg.batch_size] for i in range(0, len(indices), cfg.batch_size)]
    return DataLoader(
        Transformed(dataset, EvalTransform(cfg.eval_short_side, cfg.max_size)),
        batch_sampler=batches,
        collate_fn=collate,
        num_workers=cfg.num_workers,
        pin_memory=dist.device.type == "cuda",
    )
