"""Input data: prepare a data set on disk, then stream augmented batches from DALI.

layout = prepare_dataset(data_spec)
loader = build_loader(data_spec, layout, "train", batch_size=B, shard_id=rank,
                      num_shards=world, seed=S, device=resolve_device(...), device_id=...)
for epoch in range(E):
    loader.set_epoch(epoch)
    for images, labels in loader: ...
"""

from resnetctl.data.imagefolder import DataError, DatasetLayout
from resnetctl.data.loader import (
    DaliLoader,
    build_loader,
    build_ten_crop_loader,
    resolve_device,
    ten_crop_scores,
)
from resnetctl.data.sources import prepare_dataset

__all__ = [
    "DaliLoader",
    "DataError",
    "DatasetLayout",
    "build_loader",
    "build_ten_crop_loader",
    "prepare_dataset",
    "resolve_device",
    "ten_crop_scores",
]
