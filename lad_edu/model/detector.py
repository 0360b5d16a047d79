"""The PAA / LAD detector: backbone -> FPN (P3-P7) -> dense head, plus its anchors and box coder.

The network knows no assigner (docs/ARCHITECTURE.md): it maps images to one prediction per anchor
(:class:`~lad_edu.model.head.HeadOutput`) and decodes boxes; ``train/`` puts it together with an assigner
and the losses. The module names are MMDetection's (``backbone``, ``neck``, ``bbox_head``), so its PAA
and LAD checkpoints load with :func:`~lad_edu.model.mmdet_import.load_mmdet_state_dict`.

Images go in as ``[B, 3, H, W]`` float RGB in 0..255, padded at the bottom and right to a multiple of 32
(``lad_edu.data.transforms.collate``), with each image's unpadded ``(h, w)``. The network first normalises
with ``pixel_mean`` / ``pixel_std`` and *then* sets the padding to 0 (:meth:`Detector.normalize`), as
MMDetection's data preprocessor does: a network trained there sees exactly the input it was trained on,
whatever the image size. (Normalising a zero-padded batch would turn the padding into ``-mean / std``
and change every prediction near the right and bottom edges.) Its feature maps are
``ceil(H / s) x ceil(W / s)`` for every size (not only multiples of 32), which is what
:meth:`Detector.anchors` lays anchors on.

>>> cfg = ModelConfig(backbone="small", frozen_stages=-1, norm_eval=False, fpn_channels=16,
...                   head_channels=16, stacked_convs=1, gn_groups=4)
>>> model = build_detector(cfg, num_classes=3)
>>> images = torch.rand(2, 3, 64, 96) * 255
>>> cls_logits, pred_boxes = model.dense_predictions(images, image_sizes=[(64, 96), (50, 70)])
>>> tuple(cls_logits.shape), tuple(pred_boxes.shape), len(model.anchors((64, 96)).anchors)
((2, 129, 3), (2, 129, 4), 129)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from lad_edu.anchors import AnchorGenerator, Anchors
from lad_edu.boxes import DeltaXYWHCoder
from lad_edu.model.backbone import build_backbone
from lad_edu.model.fpn import FPN
from lad_edu.model.head import HeadOutput, PAAHead
from lad_edu.model.postprocess import postprocess_image

__all__ = ["ModelConfig", "Detector", "build_detector", "NETWORK_STRIDES"]

NETWORK_STRIDES = (8, 16, 32, 64, 128)  # P3-P5 from C3-C5 of the backbone, P6 and P7 from the FPN
ANCHOR_CACHE_SIZE = 32  # anchor sets kept per process (one per padded image size and device)

ImageSizes = Sequence[tuple[int, int]]  # one (height, width) per image of a batch, before padding


@dataclass
class ModelConfig:
    """Everything that defines the network and its test-time post-processing.

    The defaults are MMDetection's ``paa_r50_fpn_1x_coco`` (docs/reference_behaviour.md: "PAA's recipe",
    "Test time"). Sequences may be given as lists (from YAML); they are stored as tuples.

    The classroom recipe (``lad_edu/configs/classroom_paa.yaml``) uses the small backbone with
    ``frozen_stages=-1, norm_eval=False`` (a randomly initialised backbone must train its first stages and
    its BatchNorm statistics) and a 64-channel FPN and head with 2 convolutions per tower.
    """

    backbone: str = "resnet50"  # resnet18 | resnet34 | resnet50 | resnet101 | small
    backbone_weights: str | None = None  # local torchvision ImageNet state dict (.pth), or random init
    frozen_stages: int = 1  # stem + layer1 frozen; -1 freezes nothing
    norm_eval: bool = True  # backbone BatchNorm kept in eval mode while training
    fpn_channels: int = 256
    head_channels: int = 256
    stacked_convs: int = 4  # conv-GN-ReLU layers in each head tower
    gn_groups: int = 32
    cop: bool = False  # Conditional Objectness Prediction (LAD paper, appendix A)
    strides: tuple[int, ...] = NETWORK_STRIDES
    octave_base_scale: float = 8  # one anchor of side 8 * stride per location
    box_stds: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)  # RGB, 0..255
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    # test time
    nms_pre: int = 1000  # anchors kept per level before NMS
    score_thr: float = 0.05
    nms_iou: float = 0.6
    max_per_img: int = 100
    score_voting: bool = True
    # order of the voted detections: "score" (descending) or "class" (MMDetection's: grouped by class in
    # increasing label order, by score inside a class), to compare with MMDetection row by row
    voting_order: str = "score"

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                setattr(self, field.name, tuple(value))
        if self.voting_order not in ("score", "class"):
            raise ValueError(f"model.voting_order must be 'score' or 'class', got {self.voting_order!r}")


@functools.lru_cache(maxsize=ANCHOR_CACHE_SIZE)
def cached_anchors(generator: AnchorGenerator, image_size: tuple[int, int], device: torch.device) -> Anchors:
    """``generator(image_size, device)``, computed once per (generator, size, device)."""
    return generator(image_size, device=device)


class Detector(nn.Module):
    """ResNet (or the small CPU backbone) + FPN + PAA head; one square anchor per location.

    Args:
        cfg: the architecture and test-time settings.
        num_classes: foreground classes (80 for COCO).

    Attributes:
        anchor_generator: one ``octave_base_scale · stride`` square per location, level-major.
        coder: ``DeltaXYWHCoder(stds=cfg.box_stds)``, decoding the head's deltas into boxes.
    """

    def __init__(self, cfg: ModelConfig, num_classes: int):
        super().__init__()
        if tuple(cfg.strides) != NETWORK_STRIDES:
            raise ValueError(
                f"backbone + FPN produce P3-P7 at strides {NETWORK_STRIDES}; cfg.strides is {cfg.strides}"
            )
        self.cfg = cfg
        self.num_classes = num_classes
        self.backbone = build_backbone(cfg.backbone, cfg.backbone_weights, cfg.frozen_stages, cfg.norm_eval)
        self.neck = FPN(self.backbone.out_channels, cfg.fpn_channels)
        self.bbox_head = PAAHead(
            num_classes,
            in_channels=cfg.fpn_channels,
            feat_channels=cfg.head_channels,
            stacked_convs=cfg.stacked_convs,
            gn_groups=cfg.gn_groups,
            num_levels=len(cfg.strides),
            cop=cfg.cop,
        )
        # not in the state dict: MMDetection keeps them in the config, not in the checkpoint
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std).view(1, 3, 1, 1), persistent=False)
        self.anchor_generator = AnchorGenerator(
            strides=tuple(cfg.strides),
            ratios=(1.0,),
            octave_base_scale=cfg.octave_base_scale,
            scales_per_octave=1,
        )
        self.coder = DeltaXYWHCoder(stds=tuple(cfg.box_stds))

    def normalize(self, images: Tensor, image_sizes: ImageSizes | None = None) -> Tensor:
        """Normalise, then zero the padding: MMDetection's order of preprocessing.

        Args:
            images: ``[B, 3, H, W]`` RGB in 0..255, each image at the top left, padded bottom and right.
            image_sizes: ``(h, w)`` of each image before padding; None when nothing is padded.

        Returns:
            ``[B, 3, H, W]``: ``(pixel - pixel_mean) / pixel_std`` inside each image, exactly 0 outside.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got shape {tuple(images.shape)}")
        x = (images - self.pixel_mean) / self.pixel_std
        if image_sizes is None:
            return x
        if len(image_sizes) != len(images):
            raise ValueError(f"need one image size per image ({len(images)}), got {len(image_sizes)}")
        height, width = images.shape[-2:]
        for i, (h, w) in enumerate(image_sizes):
            if not (0 < h <= height and 0 < w <= width):
                raise ValueError(
                    f"image {i} has size {(h, w)}, which does not fit the batch's {(height, width)}"
                )
            x[i, :, h:] = 0
            x[i, :, :, w:] = 0
        return x

    def forward(self, images: Tensor, image_sizes: ImageSizes | None = None) -> HeadOutput:
        """``[B, 3, H, W]`` RGB in 0..255 -> the head's predictions for the ``N`` anchors of ``H x W``.

        ``image_sizes``: each image's ``(h, w)`` before padding (see :meth:`normalize`); None if unpadded.
        """
        return self.bbox_head(self.neck(self.backbone(self.normalize(images, image_sizes))))

    def anchors(self, image_size: tuple[int, int], device: torch.device | str | None = None) -> Anchors:
        """The anchors of a (padded) ``(height, width)`` image: ``[N, 4]`` xyxy and anchors per level.

        Cached per size and device: treat the returned tensor as read-only.
        """
        device = torch.device(device) if device is not None else self.pixel_mean.device
        return cached_anchors(self.anchor_generator, (int(image_size[0]), int(image_size[1])), device)

    def decode(self, anchors: Tensor, box_deltas: Tensor) -> Tensor:
        """Anchors ``[N, 4]`` and deltas ``[B, N, 4]`` -> boxes ``[B, N, 4]`` xyxy, not clipped (training)."""
        batch = box_deltas.shape[0]
        boxes = self.coder.decode(anchors.expand(batch, -1, -1).reshape(-1, 4), box_deltas.reshape(-1, 4))
        return boxes.view(box_deltas.shape)

    def checked_anchors(self, out: HeadOutput, image_size: tuple[int, int], device: torch.device) -> Anchors:
        """:meth:`anchors`, after checking that the head's feature maps have the anchor grid's sizes."""
        expected = self.anchor_generator.feature_sizes(image_size)
        if out.feature_sizes != expected:
            raise RuntimeError(f"feature maps {out.feature_sizes} do not match the anchor grid {expected}")
        return self.anchors(image_size, device)

    def dense_predictions(
        self, images: Tensor, image_sizes: ImageSizes | None = None
    ) -> tuple[Tensor, Tensor]:
        """``images [B, 3, H, W]`` -> ``cls_logits [B, N, C]`` and decoded ``pred_boxes [B, N, 4]``.

        ``image_sizes`` as in :meth:`forward`. What a LAD ``Teacher`` wraps (``lad_edu.assign.lad``).
        """
        out = self(images, image_sizes)
        anchors = self.checked_anchors(out, tuple(images.shape[-2:]), images.device).anchors
        return out.cls_logits, self.decode(anchors, out.box_deltas)

    @torch.no_grad()
    def predict(
        self,
        images: Tensor,
        image_sizes: ImageSizes,
        scale_factors: list[tuple[float, float]] | None = None,
    ) -> list[dict[str, Tensor]]:
        """Detections for each image, in eval mode and without gradients (the previous mode is restored).

        Args:
            images: ``[B, 3, H, W]`` RGB in 0..255, padded.
            image_sizes: ``(height, width)`` of each image before padding; boxes are clipped to it.
            scale_factors: ``(w, h)`` resize factor of each image (``target["scale_factor"]``): boxes are
                divided by it before NMS and voting, so they come back in the original image's pixels
                (MMDetection's ``rescale=True``). None: boxes in input pixels.

        Returns:
            One dict per image: ``boxes [K, 4]`` xyxy, ``scores [K]``, ``labels [K]``.
        """
        if len(image_sizes) != len(images):
            raise ValueError(f"need one image size per image ({len(images)}), got {len(image_sizes)}")
        if scale_factors is not None and len(scale_factors) != len(images):
            raise ValueError(f"need one scale factor per image ({len(images)}), got {len(scale_factors)}")
        was_training = self.training
        self.eval()
        try:
            out = self(images, image_sizes)
        finally:
            self.train(was_training)
        anchors, num_level_anchors = self.checked_anchors(out, tuple(images.shape[-2:]), images.device)
        cfg = self.cfg
        return [
            postprocess_image(
                out.cls_logits[i],
                out.box_deltas[i],
                out.iou_logits[i],
                anchors,
                num_level_anchors,
                tuple(image_sizes[i]),
                self.coder,
                scale_factor=None if scale_factors is None else tuple(scale_factors[i]),
                nms_pre=cfg.nms_pre,
                score_thr=cfg.score_thr,
                nms_iou=cfg.nms_iou,
                max_per_img=cfg.max_per_img,
                voting=cfg.score_voting,
                voting_order=cfg.voting_order,
            )
            for i in range(len(images))
        ]


def build_detector(cfg: ModelConfig, num_classes: int) -> Detector:
    """The detector described by ``cfg`` for ``num_classes`` foreground classes."""
    return Detector(cfg, num_classes)
