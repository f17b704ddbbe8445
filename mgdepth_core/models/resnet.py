"""torchvision ResNet encoders for Manydepth: the single-frame teacher and the two-frame pose encoder.

ImageNet weights are taken from the torch hub cache when they are there (``torch.hub.get_dir()/checkpoints``)
and are never downloaded; without them the encoder starts from torchvision's random initialisation.
"""

from __future__ import annotations

import logging
import os

import torch
import torchvision
from torch import nn

from mgdepth_core.torch_files import load_weights_only

log = logging.getLogger(__name__)

IMAGENET_WEIGHTS = {
    18: torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    50: torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
}
RESNET_BUILDERS = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}


def encoder_channels(num_layers: int) -> list[int]:
    """Channels of the five encoder outputs (H/2, H/4, H/8, H/16, H/32) of a ResNet-18 or -50."""
    check_num_layers(num_layers)
    return [64, 64, 128, 256, 512] if num_layers == 18 else [64, 256, 512, 1024, 2048]


def check_num_layers(num_layers: int) -> None:
    if num_layers not in RESNET_BUILDERS:
        raise ValueError(f"ResNet depth must be 18 or 50, got {num_layers}")


def normalise_image(image: torch.Tensor) -> torch.Tensor:
    """B×3×H×W in [0, 1] → the ResNet input, (x − 0.45) / 0.225 as Manydepth normalises."""
    return (image - 0.45) / 0.225


def imagenet_weights_path(num_layers: int) -> str:
    """Where torchvision's ImageNet file for a ResNet-18/50 lies in the torch hub cache (it may be absent)."""
    check_num_layers(num_layers)
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(IMAGENET_WEIGHTS[num_layers].url))


def cached_imagenet_state(num_layers: int) -> dict[str, torch.Tensor] | None:
    """torchvision's ImageNet state dict from the torch hub cache, or None when it is not on disk."""
    path = imagenet_weights_path(num_layers)
    if not os.path.isfile(path):
        log.warning("ImageNet weights for ResNet-%d not found at %s: starting from random initialisation "
                    "(nothing is downloaded; `mgdepth weights get resnet%d-imagenet` fetches them)", num_layers, path,
                    num_layers)
        return None
    log.info("ResNet-%d initialised from ImageNet weights %s", num_layers, path)
    return load_weights_only(path, f"ResNet-{num_layers} ImageNet state dict")


def build_resnet(num_layers: int, pretrained: bool, num_input_images: int = 1) -> torchvision.models.ResNet:
    """A torchvision ResNet whose conv1 takes ``3 × num_input_images`` channels.

    With ``pretrained`` and cached ImageNet weights, conv1's weights are repeated over the stacked images and
    divided by their number (Monodepth2's multi-image initialisation).
    """
    check_num_layers(num_layers)
    resnet = RESNET_BUILDERS[num_layers](weights=None)
    if num_input_images != 1:
        resnet.conv1 = nn.Conv2d(3 * num_input_images, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(resnet.conv1.weight, mode="fan_out", nonlinearity="relu")
    state = cached_imagenet_state(num_layers) if pretrained else None
    if state is not None:
        state["conv1.weight"] = torch.cat([state["conv1.weight"]] * num_input_images, 1) / num_input_images
        resnet.load_state_dict(state)
    return resnet


class ResnetEncoder(nn.Module):
    """ResNet feature pyramid: B×3k×H×W images in [0, 1] → five maps at H/2 … H/32 (see :func:`encoder_channels`).

    The torchvision network lives under ``encoder`` (its unused ``fc`` included) so that the state dict equals
    Manydepth's ``mono_encoder.pth`` / ``pose_encoder.pth``.
    """

    def __init__(self, num_layers: int = 18, pretrained: bool = False, num_input_images: int = 1):
        super().__init__()
        self.num_ch_enc = encoder_channels(num_layers)
        self.encoder = build_resnet(num_layers, pretrained, num_input_images)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        net = self.encoder
        x = net.relu(net.bn1(net.conv1(normalise_image(image))))
        features = [x]
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = layer(net.maxpool(x) if layer is net.layer1 else x)
            features.append(x)
        return features


@torch.no_grad()
def fold_batch_norms(module: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d into that convolution, in place.

    Pairs are torchvision/timm's ``convN``/``bnN`` attributes and consecutive entries of an ``nn.Sequential``
    (``layer0``, ``downsample``). The BatchNorm becomes ``nn.Identity``, so the state dict changes: use this on a
    model kept for inference only. Returns the number of folded pairs.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for parent in list(module.modules()):
        pairs: list[tuple[str, str]] = []
        if isinstance(parent, nn.Sequential):
            names = list(parent._modules)
            pairs = list(zip(names[:-1], names[1:]))
        else:
            pairs = [(f"conv{i}", f"bn{i}") for i in range(1, 4)]
        for conv_name, bn_name in pairs:
            conv, bn = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and not bn.training:
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(parent, bn_name, nn.Identity())
                folded += 1
    return folded
