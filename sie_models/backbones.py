"""ResNet-18 backbone with a width multiplier and a stem chosen from the image size.

The representation is the global-average-pooled output of the last stage: 8 * width dims
(512 at the published width 64). The last batch-norm of every residual block starts at zero so that
each block starts as the identity, as in the published SIE and VICReg code.

The blocks follow torchvision's ResNet-18. The published SIE code uses VICReg's variant, which differs in
details that leave the representation size unchanged: TensorFlow-style asymmetric padding before the 7x7
stem convolution and the max-pool, the stride on the second 3x3 convolution of a downsampling block, and a
1x1-convolution shortcut on the first block of every stage (the first stage included).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Stem = Literal["auto", "imagenet", "small"]

#: Images at most this many pixels wide get the small-image stem when the stem is "auto".
SMALL_STEM_MAX_SIZE = 128
STAGE_BLOCKS = (2, 2, 2, 2)  # ResNet-18
STAGE_STRIDES = (1, 2, 2, 2)


def resnet18(width: int = 64, image_size: int = 256, stem: Stem = "auto") -> ResNet:
    """ResNet-18 whose stages have width, 2*width, 4*width, 8*width channels.

    `stem="auto"` picks the small-image stem (3x3 conv, stride 1, no max-pool) for images of at most
    `SMALL_STEM_MAX_SIZE` pixels and the ImageNet stem (7x7 conv, stride 2, 3x3 max-pool) above.
    """
    if width < 1:
        raise ValueError(f"backbone width must be a positive number of channels, got {width}")
    if image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
    return ResNet(width=width, stem=resolve_stem(stem, image_size))


def representation_dim(width: int) -> int:
    """Size of the ResNet-18 representation at a base width: the last stage has 8 * width channels."""
    return width * 2 ** (len(STAGE_BLOCKS) - 1)


def resolve_stem(stem: Stem, image_size: int) -> Literal["imagenet", "small"]:
    """The concrete stem for an image size: "auto" becomes "small" up to 128 px, else "imagenet"."""
    if stem == "auto":
        return "small" if image_size <= SMALL_STEM_MAX_SIZE else "imagenet"
    if stem not in ("imagenet", "small"):
        raise ValueError(f"unknown stem {stem!r}; use 'auto', 'imagenet' or 'small'")
    return stem


class ResNet(nn.Module):
    """ResNet-18 trunk: images (N, 3, H, W) -> representations (N, 8 * width)."""

    def __init__(self, width: int, stem: Literal["imagenet", "small"]) -> None:
        super().__init__()
        self.stem = _stem(width, stem)
        stages = []
        channels = width
        for stage, (blocks, stride) in enumerate(zip(STAGE_BLOCKS, STAGE_STRIDES, strict=True)):
            out_channels = width * 2**stage
            stages.append(_stage(channels, out_channels, blocks, stride))
            channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.output_dim = channels
        _initialise(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.stages(self.stem(images))
        return torch.flatten(self.pool(features), 1)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (projected when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def _stem(width: int, stem: Literal["imagenet", "small"]) -> nn.Sequential:
    if stem == "small":
        return nn.Sequential(
            nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
    return nn.Sequential(
        nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),
    )


def _stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(in_channels, out_channels, stride)]
    layers += [BasicBlock(out_channels, out_channels, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _initialise(model: ResNet) -> None:
    """He initialisation for convolutions; unit BN except a zero gamma on each block's last BN."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    for module in model.modules():
        if isinstance(module, BasicBlock):
            nn.init.zeros_(module.bn2.weight)
