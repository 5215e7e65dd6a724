"""Top-k labels of image files: the model's validation preprocessing, batched."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from resnetctl.inference.preprocess import as_imagenet, file_batches, predict_resize
from resnetctl.inference.source import LoadedModel


@dataclass(frozen=True)
class Prediction:
    """The k most probable classes of one image."""

    file: str
    labels: tuple[str, ...]
    indices: tuple[int, ...]
    probabilities: tuple[float, ...]

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "file": self.file,
            "top": [
                {"label": label, "index": index, "probability": prob}
                for label, index, prob in zip(
                    self.labels, self.indices, self.probabilities, strict=True
                )
            ],
        }


def predict(
    loaded: LoadedModel,
    files: list[Path],
    *,
    top: int = 5,
    batch_size: int = 32,
    on_images: Callable[[int], None] | None = None,
) -> list[Prediction]:
    """The `top` most probable classes of each file, in the order given; `on_images(n)` follows
    each batch of n."""
    if loaded.spec is None:
        raise ValueError(
            f"{loaded.origin}: no spec found, so its input size and normalisation are unknown"
        )
    cfg = as_imagenet(loaded.spec.pipeline, predict_resize(loaded.spec.pipeline))
    results: list[Prediction] = []
    names = iter(files)
    with torch.no_grad():
        for images in file_batches(files, cfg, batch_size, threads=loaded.spec.data.threads):
            probs = loaded.model(images).float().softmax(dim=-1)
            if on_images is not None:
                on_images(images.shape[0])
            k = min(top, probs.shape[1])
            values, indices = probs.topk(k, dim=1)
            for row_values, row_indices in zip(values.tolist(), indices.tolist(), strict=True):
                results.append(
                    Prediction(
                        file=str(next(names)),
                        labels=tuple(loaded.class_name(i) for i in row_indices),
                        indices=tuple(row_indices),
                        probabilities=tuple(row_values),
                    )
                )
    return results
