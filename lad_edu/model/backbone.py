"""Backbones: a stem and four stages, of which the last three give C3, C4, C5 (strides 8, 16, 32).

Two kinds:

* :func:`resnet` — torchvision's ResNet-18/34/50/101 with torchvision's own module names (``conv1``,
  ``bn1``, ``layer1`` ... ``layer4``), which are also MMDetection's, so an MMDetection checkpoint's
  ``backbone.*`` keys and torchvision's ImageNet files load as they are. ``fc`` and ``avgpool`` are dropped.
* :func:`small_backbone` — five conv-BN-ReLU stages for the classroom dataset on a laptop CPU.

Both follow MMDetection's training conventions for a pre-trained backbone (docs/reference_behaviour.md):

* ``frozen_stages = k`` freezes the stem and ``layer1`` ... ``layer{k}`` (``requires_grad = False``, and
  kept in eval mode); ``-1`` freezes nothing, MMDetection's PAA uses 1.
* ``norm_eval = True`` keeps every BatchNorm in eval mode (running statistics, no updates) even after
  ``.train()``: with 2 images per GPU, batch statistics are too noisy to be worth learning.

Both settings assume pre-trained weights. A network trained from random initialisation (the small
backbone, or a ResNet without ``weights``) wants ``frozen_stages=-1`` and ``norm_eval=False``.

Every stride-2 step (a 3x3 convolution or max-pool with padding 1, a 7x7 convolution with padding 3, a
1x1 convolution without padding) maps a side of ``n`` pixels to ``ceil(n / 2)``, so the C3-C5 maps of an
``H x W`` image are ``ceil(H / s) x ceil(W / s)`` for any ``H, W``: exactly
:meth:`lad_edu.anchors.AnchorGenerator.feature_sizes`.

>>> import torch
>>> net = small_backbone(width=8)
>>> [tuple(c.shape) for c in net(torch.zeros(1, 3, 100, 60))], net.out_channels
([(1, 16, 13, 8), (1, 32, 7, 4), (1, 64, 4, 2)], [16, 32, 64])
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torchvision
from torch import Tensor, nn

from lad_edu.model.checkpoint import load_strict, read_state_dict

__all__ = ["Backbone", "ResNet", "SmallBackbone", "resnet", "small_backbone", "build_backbone", "BACKBONES"]

RESNET_DEPTHS = {18: "resnet18", 34: "resnet34", 50: "resnet50", 101: "resnet101"}
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "small")
NUM_STAGES = 4  # layer1 ... layer4; frozen_stages counts these after the stem


class Backbone(nn.Module):
    """A stem and ``layer1`` ... ``layer4``; returns ``[C3, C4, C5]``, the outputs of layers 2-4.

    Subclasses build the stem and the four layers, set ``out_channels``, implement :meth:`stem` and list
    the stem's modules in :meth:`stem_modules`, then call :meth:`freeze`.
    """

    out_channels: list[int]  # channels of C3, C4, C5

    def __init__(self, frozen_stages: int, norm_eval: bool):
        super().__init__()
        if not -1 <= frozen_stages <= NUM_STAGES:
            raise ValueError(f"frozen_stages must be in -1..{NUM_STAGES}, got {frozen_stages}")
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

    def stem(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> the input of ``layer1``."""
        raise NotImplementedError

    def stem_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def forward(self, images: Tensor) -> list[Tensor]:
        """``[B, 3, H, W]`` -> ``[C3, C4, C5]``, each ``[B, out_channels[i], ceil(H / s), ceil(W / s)]``.

        The strides ``s`` are 8, 16, 32.
        """
        c3 = self.layer2(self.layer1(self.stem(images)))
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c3, c4, c5]

    def frozen_modules(self) -> list[nn.Module]:
        """The stem and the first ``frozen_stages`` layers (nothing for ``frozen_stages = -1``)."""
        if self.frozen_stages < 0:
            return []
        layers = [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]
        return self.stem_modules() + layers

    def freeze(self) -> None:
        """Stop the frozen modules' gradients and put them in eval mode (MMDetection's ``_freeze_stages``)."""
        for module in self.frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad_(False)

    def train(self, mode: bool = True) -> Backbone:
        """``nn.Module.train``, but frozen modules (and with ``norm_eval`` every BatchNorm) stay in eval."""
        super().train(mode)
        if mode:
            for module in self.frozen_modules():
                module.eval()
            if self.norm_eval:
                for module in self.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()
        return self


class ResNet(Backbone):
    """torchvision's ResNet without ``avgpool`` and ``fc``: ``conv1, bn1, relu, maxpool, layer1..4``."""

    def __init__(self, depth: int, frozen_stages: int = 1, norm_eval: bool = True):
        super().__init__(frozen_stages, norm_eval)
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
        net = getattr(torchvision.models, RESNET_DEPTHS[depth])(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        expansion = 1 if depth < 50 else 4  # BasicBlock vs Bottleneck
        self.out_channels = [128 * expansion, 256 * expansion, 512 * expansion]
        self.freeze()

    def stem(self, images: Tensor) -> Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(images))))

    def stem_modules(self) -> list[nn.Module]:
        return [self.conv1, self.bn1]


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (padding 1, no bias), BatchNorm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallBackbone(Backbone):
    """Plain 3x3 conv-BN-ReLU stages for 128-256 px images on a CPU; ``width`` sets the channels.

    ======  ============  ======  ==============
    stage   convolutions  stride  channels
    ======  ============  ======  ==============
    stem    s2            2       w / 2
    layer1  s2            4       w
    layer2  s2, s1        8       2w  (C3)
    layer3  s2, s1        16      4w  (C4)
    layer4  s2, s1        32      8w  (C5)
    ======  ============  ======  ==============

    On a CPU the high-resolution stages cost the most time for the fewest parameters, hence the thin
    stem (with ``width=32`` it takes a third less time than a ``w``-channel stem).
    """

    def __init__(self, width: int = 32, frozen_stages: int = -1, norm_eval: bool = False):
        super().__init__(frozen_stages, norm_eval)
        w = width
        self.stem_conv = conv_bn_relu(3, w // 2, stride=2)
        self.layer1 = conv_bn_relu(w // 2, w, stride=2)
        self.layer2 = nn.Sequential(conv_bn_relu(w, 2 * w, stride=2), conv_bn_relu(2 * w, 2 * w))
        self.layer3 = nn.Sequential(conv_bn_relu(2 * w, 4 * w, stride=2), conv_bn_relu(4 * w, 4 * w))
        self.layer4 = nn.Sequential(conv_bn_relu(4 * w, 8 * w, stride=2), conv_bn_relu(8 * w, 8 * w))
        self.out_channels = [2 * w, 4 * w, 8 * w]
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        self.freeze()

    def stem(self, images: Tensor) -> Tensor:
        return self.stem_conv(images)

    def stem_modules(self) -> list[nn.Module]:
        return [self.stem_conv]


def read_backbone_weights(path: str | Path) -> dict[str, Tensor]:
    """A local state dict (torchvision's ImageNet ``resnet50-*.pth``, ...) without its ``fc.*`` keys."""
    return {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}


def resnet(
    depth: int, weights: str | Path | None = None, frozen_stages: int = 1, norm_eval: bool = True
) -> ResNet:
    """ResNet-``depth`` (18, 34, 50, 101), randomly initialised or from a local torchvision state dict.

    Args:
        depth: 18, 34 (BasicBlock, C3-C5 of 128/256/512 channels) or 50, 101 (Bottleneck, 512/1024/2048).
        weights: path of a torchvision ImageNet state dict (``torch.load(weights_only=True)``), or None.
        frozen_stages: stem and ``layer1`` ... ``layer{k}`` frozen; -1 for none (MMDetection PAA: 1).
        norm_eval: keep BatchNorm in eval mode while training (MMDetection PAA: True).

    Raises:
        FileNotFoundError: naming ``weights`` when there is no such file.
        ValueError: naming ``weights`` and the keys when the file does not fit the network.
    """
    state_dict = read_backbone_weights(weights) if weights is not None else None  # fail before building
    net = ResNet(depth, frozen_stages=frozen_stages, norm_eval=norm_eval)
    if state_dict is not None:
        load_strict(net, state_dict, source=str(weights))
    return net


def small_backbone(
    width: int = 32, weights: str | Path | None = None, frozen_stages: int = -1, norm_eval: bool = False
) -> SmallBackbone:
    """A :class:`SmallBackbone` (C3-C5 of ``2w, 4w, 8w`` channels), random init or from a local state dict."""
    net = SmallBackbone(width, frozen_stages=frozen_stages, norm_eval=norm_eval)
    if weights is not None:
        load_strict(net, read_backbone_weights(weights), source=str(weights))
    return net


def build_backbone(
    name: str, weights: str | Path | None = None, frozen_stages: int = 1, norm_eval: bool = True
) -> Backbone:
    """The backbone called ``name``: one of ``resnet18, resnet34, resnet50, resnet101, small``."""
    if name == "small":
        if weights is None and (frozen_stages >= 0 or norm_eval):
            warnings.warn(
                f"the small backbone starts from random weights: frozen_stages={frozen_stages} and "
                f"norm_eval={norm_eval} hold random layers or BatchNorm statistics fixed; "
                "use frozen_stages=-1, norm_eval=False",
                stacklevel=2,
            )
        return small_backbone(weights=weights, frozen_stages=frozen_stages, norm_eval=norm_eval)
    if name in BACKBONES:
        return resnet(int(name.removeprefix("resnet")), weights, frozen_stages, norm_eval)
    raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(BACKBONES)}")
