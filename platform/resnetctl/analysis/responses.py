"""Layer responses of a trained network, as in the paper's Fig. 7.

He et al. measure "the standard deviations (std) of the layer responses": the output of each 3x3
convolution after its batch normalisation and before the nonlinearity. In a residual block the
second BN's output is taken before the shortcut is added, so it is the response of the residual
function F alone; in a plain block it is the same BN. ResNets are expected to respond less than
their plain twins, and deeper ResNets less still.

Which BN follows which 3x3 convolution is found by tracing one forward pass (a BN whose input is
the very tensor a 3x3 conv returned), not from module names, so the analysis measures what the
network computes: the 7x7 ImageNet stem, 1x1 bottleneck and projection-shortcut convolutions are
left out because they are not 3x3, and a pre-activation net (where BN precedes the convolution)
is refused instead of being measured at the wrong place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm)


class AnalysisError(ValueError):
    """The network (or its data) cannot be analysed as the paper does."""


@dataclass(frozen=True)
class ResponseLayer:
    """A 3x3 convolution and the normalisation layer that directly consumes its output."""

    index: int  # 1-based position in forward order
    conv: str  # module name of the 3x3 convolution, e.g. "layer1.0.conv2"
    norm: str  # module name of the BN whose output is measured, e.g. "layer1.0.bn2"
    channels: int


@dataclass(frozen=True)
class LayerResponse:
    """The std of one layer's response over every element (image, channel, position)."""

    index: int
    conv: str
    norm: str
    channels: int
    std: float
    mean: float
    count: int  # elements the std is over: images x channels x height x width
    images: int

    def as_dict(self) -> dict[str, Any]:
        """JSON- and CSV-ready form."""
        return asdict(self)


def _images(batch: Any) -> Tensor:
    """The images of a loader batch: `images`, `(images, labels)` or `[images, labels]`."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError(f"expected a tensor or an (images, labels) pair, got {type(batch).__name__}")


def _is_3x3(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (3, 3)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Inference mode (BN with its running statistics, as at test time), restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def response_layers(model: nn.Module, example: Tensor) -> list[ResponseLayer]:
    """The 3x3 conv -> BN pairs of `model`, in forward order, found by tracing `example`.

    Raises `AnalysisError` when some 3x3 convolution is not followed directly by a normalisation
    layer (pre-activation nets), since the paper's measurement point does not exist there.
    """
    names = {module: name for name, module in model.named_modules()}
    # The output tensor is kept with its conv: a freed tensor's id could be reused by a later,
    # unrelated tensor and pair the wrong layers.
    conv_outputs: dict[int, tuple[nn.Module, Tensor]] = {}
    pairs: list[tuple[nn.Module, nn.Module]] = []
    called_convs: list[nn.Module] = []

    def after_conv(module: nn.Module, _inputs: tuple[Any, ...], output: Tensor) -> None:
        called_convs.append(module)
        conv_outputs[id(output)] = (module, output)

    def before_norm(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        found = conv_outputs.pop(id(inputs[0]), None) if inputs else None
        if found is not None and found[1] is inputs[0]:
            pairs.append((found[0], module))

    handles = []
    for module in model.modules():
        if _is_3x3(module):
            handles.append(module.register_forward_hook(after_conv))
        elif isinstance(module, _NORMS):
            handles.append(module.register_forward_pre_hook(before_norm))
    try:
        with _eval_mode(model):
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    paired = {conv for conv, _ in pairs}
    unpaired = [names[c] for c in dict.fromkeys(called_convs) if c not in paired]
    if unpaired:
        raise AnalysisError(
            f"{len(unpaired)} 3x3 convolution(s) are not followed by a BN layer "
            f"(first: {unpaired[0]}); the paper's responses (after BN, before the nonlinearity) "
            "exist only in post-activation nets, not in pre-activation ones"
        )
    if not pairs:
        raise AnalysisError("the network has no 3x3 convolution followed by a BN layer")
    return [
        ResponseLayer(index, names[conv], names[norm], _channels(norm))
        for index, (conv, norm) in enumerate(pairs, 1)
    ]


def _channels(norm: nn.Module) -> int:
    return int(getattr(norm, "num_features", 0) or getattr(norm, "num_channels", 0))


class _Moments:
    """Running count, sum and sum of squares in float64: the std of everything seen, exactly
    as if all batches had been concatenated, without holding them."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.squares = 0.0

    def add(self, values: Tensor) -> None:
        flat = values.detach().double()
        self.count += flat.numel()
        self.total += float(flat.sum())
        self.squares += float((flat * flat).sum())

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    @property
    def std(self) -> float:
        """Sample std (Bessel's correction), as `torch.std` computes it."""
        if self.count < 2:
            return math.nan
        variance = (self.squares - self.total * self.total / self.count) / (self.count - 1)
        return math.sqrt(max(variance, 0.0))


def layer_responses(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    max_images: int | None = None,
    device: str | torch.device = "cpu",
    on_images: Callable[[int], None] | None = None,
) -> list[LayerResponse]:
    """The std of every 3x3 layer's response (after BN, before ReLU or the addition) over the
    images of `batches`, in forward order, with BN in inference mode.

    `batches` yields images or `(images, labels)`; `max_images` stops early (the last batch is
    cut so that exactly that many images count); `on_images(n)` follows each batch of n.
    """
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    model = model.to(device)
    layers: list[ResponseLayer] | None = None
    moments: dict[str, _Moments] = {}
    modules = dict(model.named_modules())
    handles: list[Any] = []
    seen = 0
    try:
        for batch in batches:
            images = _images(batch).to(device, dtype=torch.float32)
            if max_images is not None:
                images = images[: max_images - seen]
            if images.shape[0] == 0:
                break
            if layers is None:
                layers = response_layers(model, images[:1])
                for layer in layers:
                    stats = moments[layer.norm] = _Moments()
                    handles.append(modules[layer.norm].register_forward_hook(_collector(stats)))
            with _eval_mode(model):
                model(images)
            seen += images.shape[0]
            if on_images is not None:
                on_images(images.shape[0])
            if max_images is not None and seen >= max_images:
                break
    finally:
        for handle in handles:
            handle.remove()
    if layers is None:
        raise AnalysisError("no images to measure the responses on")
    return [
        LayerResponse(
            index=layer.index,
            conv=layer.conv,
            norm=layer.norm,
            channels=layer.channels,
            std=moments[layer.norm].std,
            mean=moments[layer.norm].mean,
            count=moments[layer.norm].count,
            images=seen,
        )
        for layer in layers
    ]


def _collector(stats: _Moments) -> Any:
    def hook(_module: nn.Module, _inputs: tuple[Any, ...], output: Tensor) -> None:
        stats.add(output)

    return hook


def sorted_stds(responses: Iterable[LayerResponse]) -> list[float]:
    """The stds in descending order (the bottom panel of Fig. 7)."""
    return sorted((r.std for r in responses), reverse=True)
