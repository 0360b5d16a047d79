"""The feature pyramid: C3, C4, C5 from the backbone -> P3 ... P7, all with the same number of channels.

MMDetection's PAA neck (``FPN(start_level=1, add_extra_convs='on_output', num_outs=5)``; "PAA's recipe" in
docs/reference_behaviour.md), built from :class:`torchvision.ops.FeaturePyramidNetwork`:

* ``inner_blocks.i``: 1x1 lateral convolution on C(3+i) (MMDetection's ``lateral_convs.i``);
* top-down: each lateral map plus the nearest-neighbour upsampling of the merged map above it;
* ``layer_blocks.i``: 3x3 output convolution giving P(3+i) (MMDetection's ``fpn_convs.i``);
* ``extra_blocks.p6``: 3x3 stride-2 convolution on the P5 *output* (``add_extra_convs='on_output'``);
* ``extra_blocks.p7``: 3x3 stride-2 convolution on P6, with **no ReLU** in between
  (``relu_before_extra_convs=False``; torchvision's ``LastLevelP6P7`` has one, hence :class:`P6P7OnOutput`).

There is no activation anywhere in the FPN. Every convolution is Xavier-uniform initialised with zero bias
(MMDetection's FPN ``init_cfg``). A 3x3 stride-2 convolution with padding 1 maps a side ``n`` to
``ceil(n / 2)``, so P6 and P7 are ``ceil(H / 64)`` and ``ceil(H / 128)`` high, like the anchors' grid.

>>> import torch
>>> fpn = FPN([16, 32, 64], out_channels=8)
>>> c = [torch.zeros(1, 16, 13, 8), torch.zeros(1, 32, 7, 4), torch.zeros(1, 64, 4, 2)]
>>> [tuple(p.shape[-2:]) for p in fpn(c)]
[(13, 8), (7, 4), (4, 2), (2, 1), (1, 1)]
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

__all__ = ["FPN", "P6P7OnOutput"]


class P6P7OnOutput(ExtraFPNBlock):
    """P6 = conv(P5 output), P7 = conv(P6): 3x3 stride-2 convolutions with bias and no activation."""

    def __init__(self, channels: int):
        super().__init__()
        self.p6 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(
        self, results: list[Tensor], x: list[Tensor], names: list[str]
    ) -> tuple[list[Tensor], list[str]]:
        """Append P6 and P7 to the pyramid ``results`` (``x``, the backbone maps, are not used)."""
        p6 = self.p6(results[-1])
        p7 = self.p7(p6)  # no ReLU before it: MMDetection's relu_before_extra_convs=False
        return [*results, p6, p7], [*names, "p6", "p7"]


class FPN(FeaturePyramidNetwork):
    """``[C3, C4, C5]`` -> ``[P3, P4, P5, P6, P7]``, each ``[B, out_channels, ceil(H / s), ceil(W / s)]``.

    Args:
        in_channels: channels of C3, C4, C5 (the backbone's ``out_channels``).
        out_channels: channels of every pyramid level (256 in MMDetection's PAA).
    """

    def __init__(self, in_channels: list[int], out_channels: int = 256):
        super().__init__(list(in_channels), out_channels, extra_blocks=P6P7OnOutput(out_channels))
        self.out_channels = out_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """``[C3, C4, C5]`` -> ``[P3, P4, P5, P6, P7]``."""
        named = OrderedDict((f"c{level}", feature) for level, feature in enumerate(features, start=3))
        return list(super().forward(named).values())
