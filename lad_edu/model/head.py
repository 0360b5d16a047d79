"""The dense head of PAA and LAD: a classification tower and a regression tower shared by all levels.

MMDetection's ``PAAHead`` (a subclass of ``ATSSHead``; docs/reference_behaviour.md), with its module
names, so that its checkpoints load key for key:

* ``cls_convs.i`` and ``reg_convs.i`` (``i < stacked_convs``): 3x3 conv without bias, GroupNorm, ReLU;
* ``atss_cls``: 3x3 conv to ``num_classes`` logits (sigmoid, no background channel), bias
  ``-log((1 - 0.01) / 0.01)`` so every class starts at probability 0.01 (the focal-loss prior);
* ``atss_reg``: 3x3 conv to the 4 box deltas, multiplied by the level's learnable ``scales.l.scale``;
* ``atss_centerness``: 3x3 conv to 1 logit, the *IoU prediction* (PAA predicts the IoU of its box, the
  name is ATSS's).

PAA has one anchor per location, so each level contributes ``H·W`` rows, flattened level-major and
row-major inside a level: the order of :class:`lad_edu.anchors.AnchorGenerator`.

**Conditional Objectness Prediction** (``cop=True``, LAD paper appendix A, eq. 4). A 3x3 conv
``coeff_conv`` on the regression tower (the name of the LAD authors' ``PAA_COP_Head``) predicts 9
objectness logits ``o_i^k`` at each anchor ``i``, one per neighbour ``k`` of its 3x3 window
(``k = 3·(dy + 1) + (dx + 1)``, row-major). The class probability becomes

    p(a_i) = 1/9 · Σ_k sigmoid(o_i^k) · sigmoid(cls^k)

with ``cls^k`` the classification logit of neighbour ``k`` in the same level. Neighbours outside the map
contribute 0 (``F.unfold`` pads the *probabilities* with zeros; the authors' code unfolds the logits, so
there an outside neighbour counts as probability 0.5). The head still returns logits, ``logit(p)`` with
``p`` clamped to ``[1e-6, 1 - 1e-6]`` in float32: since ``sigmoid(logit(p)) = p``, the focal loss of
``logit(p)`` is the focal loss of ``p`` (the authors' ``ProbFocalLoss``) and nothing downstream changes.

>>> import torch
>>> head = PAAHead(num_classes=3, in_channels=8, feat_channels=8, stacked_convs=1, gn_groups=2)
>>> out = head([torch.zeros(2, 8, 4, 4), torch.zeros(2, 8, 2, 2), torch.zeros(2, 8, 1, 1),
...             torch.zeros(2, 8, 1, 1), torch.zeros(2, 8, 1, 1)])
>>> tuple(out.cls_logits.shape), tuple(out.box_deltas.shape), tuple(out.iou_logits.shape), out.feature_sizes
((2, 23, 3), (2, 23, 4), (2, 23), [(4, 4), (2, 2), (1, 1), (1, 1), (1, 1)])
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["HeadOutput", "PAAHead", "cop_probability", "flatten_levels"]

PRIOR_PROB = 0.01  # initial class probability (focal loss paper, section 4.1)
INIT_STD = 0.01  # std of the normal init of every head convolution (MMDetection's ATSSHead)
COP_WINDOW = 3  # COP looks at the 3x3 neighbourhood of each anchor
COP_EPS = 1e-6  # p is clamped to [COP_EPS, 1 - COP_EPS] before logit(p)


class HeadOutput(NamedTuple):
    """The head's predictions for a batch, one row per anchor (level-major, row-major in a level)."""

    cls_logits: Tensor  # [B, N, C] classification logits (sigmoid, no background class)
    box_deltas: Tensor  # [B, N, 4] normalised (dx, dy, dw, dh), decoded by DeltaXYWHCoder
    iou_logits: Tensor  # [B, N] logit of the predicted IoU of the decoded box with its object
    feature_sizes: list[tuple[int, int]]  # (h, w) of each level; sum(h * w) = N


# helpers


def flatten_levels(maps: list[Tensor]) -> Tensor:
    """Per-level maps ``[B, K, H_l, W_l]`` -> ``[B, Σ H_l·W_l, K]``, level-major, row-major in a level."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, m.shape[1]) for m in maps], dim=1)


def cop_probability(cls_logits: Tensor, objectness_logits: Tensor) -> Tensor:
    """COP's class probability (LAD paper, eq. 4): ``p_i = 1/9 Σ_k sigmoid(o_i^k) · sigmoid(cls^k)``.

    Args:
        cls_logits: ``[B, C, H, W]`` classification logits of one level.
        objectness_logits: ``[B, 9, H, W]``, channel ``k`` for the neighbour ``(dy, dx)`` with
            ``k = 3·(dy + 1) + (dx + 1)``.

    Returns:
        ``[B, C, H, W]`` probabilities in float32; a neighbour outside the map contributes 0.
    """
    batch, num_classes, height, width = cls_logits.shape
    window = COP_WINDOW * COP_WINDOW
    # [B, C·9, H·W]: for channel c, the 9 neighbours' probabilities in row-major window order
    neighbours = F.unfold(cls_logits.float().sigmoid(), kernel_size=COP_WINDOW, padding=COP_WINDOW // 2)
    neighbours = neighbours.view(batch, num_classes, window, height, width)
    objectness = objectness_logits.float().sigmoid()[:, None]  # [B, 1, 9, H, W]
    return (neighbours * objectness).mean(dim=2)


# classes


class ConvGN(nn.Module):
    """3x3 conv (no bias), GroupNorm, ReLU; children ``conv`` and ``gn`` (MMDetection's ``ConvModule``)."""

    def __init__(self, in_channels: int, out_channels: int, gn_groups: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.gn = nn.GroupNorm(gn_groups, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.gn(self.conv(x)))


class Scale(nn.Module):
    """A learnable scalar ``scale`` (0-d, MMDetection's ``mmcv.cnn.Scale``) that multiplies its input."""

    def __init__(self, value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(value, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class PAAHead(nn.Module):
    """PAA's head on the FPN levels: class logits, box deltas and an IoU logit for each anchor.

    Args:
        num_classes: foreground classes ``C`` (no background channel).
        in_channels: channels of each FPN level.
        feat_channels: channels of the two towers (256 in MMDetection).
        stacked_convs: conv-GN-ReLU layers per tower (4).
        gn_groups: GroupNorm groups (32); must divide ``feat_channels``.
        num_levels: FPN levels, one ``Scale`` each (5: P3-P7).
        cop: add Conditional Objectness Prediction (``coeff_conv``, LAD appendix A); False gives exactly
            MMDetection's ``PAAHead`` parameters.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int = 256,
        stacked_convs: int = 4,
        gn_groups: int = 32,
        num_levels: int = 5,
        cop: bool = False,
    ):
        super().__init__()
        if feat_channels % gn_groups:
            raise ValueError(f"gn_groups ({gn_groups}) must divide feat_channels ({feat_channels})")
        self.num_classes = num_classes
        self.num_levels = num_levels
        self.cop = cop
        self.cls_convs = nn.ModuleList(
            ConvGN(in_channels if i == 0 else feat_channels, feat_channels, gn_groups)
            for i in range(stacked_convs)
        )
        self.reg_convs = nn.ModuleList(
            ConvGN(in_channels if i == 0 else feat_channels, feat_channels, gn_groups)
            for i in range(stacked_convs)
        )
        tower_out = feat_channels if stacked_convs > 0 else in_channels
        self.atss_cls = nn.Conv2d(tower_out, num_classes, 3, padding=1)
        self.atss_reg = nn.Conv2d(tower_out, 4, 3, padding=1)
        self.atss_centerness = nn.Conv2d(tower_out, 1, 3, padding=1)  # the IoU prediction
        self.scales = nn.ModuleList(Scale(1.0) for _ in range(num_levels))
        if cop:
            self.coeff_conv = nn.Conv2d(tower_out, COP_WINDOW * COP_WINDOW, 3, padding=1)
        self.init_weights()

    def init_weights(self) -> None:
        """Normal(0, 0.01) convolutions with zero bias; ``atss_cls`` bias for a 0.01 prior (MMDetection)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=INIT_STD)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.constant_(self.atss_cls.bias, -math.log((1 - PRIOR_PROB) / PRIOR_PROB))

    def forward_level(self, feature: Tensor, scale: Scale) -> tuple[Tensor, Tensor, Tensor]:
        """One level ``[B, in_channels, H, W]`` -> cls logits ``[B, C, H, W]``, deltas ``[B, 4, H, W]`` and
        IoU logits ``[B, 1, H, W]``."""
        cls_feat, reg_feat = feature, feature
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)
        cls_logits = self.atss_cls(cls_feat)
        if self.cop:  # eq. 4, returned as logit(p) so that the losses still take logits
            p = cop_probability(cls_logits, self.coeff_conv(reg_feat))
            cls_logits = torch.logit(p, eps=COP_EPS)
        return cls_logits, scale(self.atss_reg(reg_feat)), self.atss_centerness(reg_feat)

    def forward(self, features: list[Tensor]) -> HeadOutput:
        """FPN levels ``[B, in_channels, H_l, W_l]`` -> :class:`HeadOutput` with ``N = Σ H_l·W_l`` rows."""
        if len(features) != self.num_levels:
            raise ValueError(f"the head has {self.num_levels} levels, got {len(features)} feature maps")
        cls_maps, delta_maps, iou_maps = zip(
            *(self.forward_level(f, scale) for f, scale in zip(features, self.scales, strict=True)),
            strict=True,
        )
        return HeadOutput(
            cls_logits=flatten_levels(list(cls_maps)),
            box_deltas=flatten_levels(list(delta_maps)),
            iou_logits=flatten_levels(list(iou_maps)).squeeze(-1),
            feature_sizes=[(f.shape[-2], f.shape[-1]) for f in features],
        )
