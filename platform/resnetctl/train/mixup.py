"""Mixup and CutMix of a training batch on its device (`train.mix`), with torchvision's
`v2.MixUp` / `v2.CutMix`: they pair each image with the batch's previous one (a roll by one)
and return soft targets; `nn.CrossEntropyLoss(label_smoothing=...)` smooths those too.

Their random numbers come from torch's global generator, which is seeded per rank and saved in
checkpoints, so a resumed run mixes as an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from resnetctl.spec.train import MixSpec

Mixer = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def build_mixer(spec: MixSpec | None, model: nn.Module, num_classes: int) -> Mixer:
    """The batch mixer of `train.mix`, or the identity when it is off."""
    if spec is None:
        return lambda images, labels: (images, labels)
    # The targets must be as wide as the logits: ask the model, not the data set.
    return BatchMixer(spec, infer_num_classes(model, num_classes))


class BatchMixer:
    """`mixer(images, labels)` -> (images, targets): mixed images and soft targets with
    probability `prob`, else the batch unchanged (integer labels)."""

    def __init__(self, spec: MixSpec, num_classes: int) -> None:
        from torchvision.transforms import v2  # only runs that mix pay for importing it

        self.spec = spec
        self.mixup = (
            v2.MixUp(alpha=spec.mixup_alpha, num_classes=num_classes) if spec.mixup_alpha else None
        )
        self.cutmix = (
            v2.CutMix(alpha=spec.cutmix_alpha, num_classes=num_classes)
            if spec.cutmix_alpha
            else None
        )

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if float(torch.rand(())) >= self.spec.prob:
            return images, labels
        transform = self.mixup
        if self.cutmix is not None and (
            transform is None or float(torch.rand(())) < self.spec.switch_prob
        ):
            transform = self.cutmix
        assert transform is not None  # MixSpec refuses both alphas at 0
        mixed, targets = transform(images, labels)
        return mixed, targets


def infer_num_classes(model: nn.Module, fallback: int = 0) -> int:
    """The output width of the model's last linear layer (every model here ends in one), else
    `fallback`."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1].out_features
    if not fallback:
        raise ValueError("train.mix needs the number of classes: set model.num_classes")
    return fallback
