"""Where a pipeline's encoded images and labels come from: DALI reader factories.

A pipeline definition (`data/pipelines.py`) calls its reader factory once, inside the pipeline
graph, and gets `(encoded images, labels)`: int32 labels of shape (1,), the form
`fn.readers.file` gives. Everything after that call (decoding, the paper's augmentation, CIFAR's,
the policies) is the same whatever the reader. Every reader is named `READER_NAME`, which
`reader_name`-based code (DALI's iterators, `pipe.reader_meta`) and checkpoints refer to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: The name of every pipeline's reader operator.
READER_NAME = "Reader"

#: Builds the reader inside a pipeline definition: `() -> (encoded, labels)`.
ReaderFactory = Callable[[], tuple[Any, Any]]

#: Extensions of the image component of a packed sample (compared case-insensitively), one
#: DALI extension set: the formats `data.imagefolder.IMAGE_EXTENSIONS` accepts.
SHARD_IMAGE_EXTENSIONS = "jpg;jpeg;png;bmp;tif;tiff;webp;pnm;ppm;pgm;pbm;jp2"
#: Extension of the label component: the class index as zero-padded ASCII decimal digits
#: (WebDataset's convention is ASCII decimal; the fixed width lets the graph parse it).
SHARD_LABEL_EXTENSION = "cls"


def file_reader(
    file_root: str,
    file_list: str,
    *,
    batch_size: int,
    shard_id: int = 0,
    num_shards: int = 1,
    shuffle: bool = False,
    seed: int = 0,
) -> ReaderFactory:
    """`fn.readers.file` over a file list (lines `relative/path label`) below `file_root`.

    `seed` must be equal on all ranks: the reader's shuffle decides which files land in which
    shard. Shuffled (training) readers do not pad; the loader hands them shards of whole
    batches; unshuffled ones pad the last batch (the loader cuts the padding off).
    """
    arguments = {
        "file_root": file_root,
        "file_list": file_list,
        "shard_id": shard_id,
        "num_shards": num_shards,
        "random_shuffle": shuffle,
        "seed": seed,
        "stick_to_shard": True,
        "pad_last_batch": not shuffle,
        # The loader already permutes the whole split every epoch; the reader's buffer only
        # mixes within a shard, and a large one makes every epoch start by reading it full.
        "initial_fill": max(2 * batch_size, 32),
    }

    def make() -> tuple[Any, Any]:
        from nvidia.dali import fn

        return fn.readers.file(name=READER_NAME, **arguments)

    return make


def webdataset_reader(
    paths: Sequence[str],
    index_paths: Sequence[str],
    *,
    label_digits: int,
    shuffle: bool,
    buffer: int,
    seed: int,
) -> ReaderFactory:
    """`fn.readers.webdataset` over tar shards (local paths or `s3://` URIs) with DALI index
    files, each sample an image and its `cls` label (`label_digits` ASCII digits).

    The reader reads the shards in the order given, each front to back; shuffled, it draws
    every sample at random from a buffer of `buffer` samples (DALI's `initial_fill`).
    Unshuffled, it pads the last batch by repeating the last sample.
    """
    arguments = {
        "paths": list(paths),
        "index_paths": list(index_paths),
        "ext": [SHARD_IMAGE_EXTENSIONS, SHARD_LABEL_EXTENSION],
        "case_sensitive_extensions": False,
        # A sample without an image or a label is a packing bug, not something to train on.
        "missing_component_behavior": "error",
        "random_shuffle": shuffle,
        "initial_fill": buffer,
        "seed": seed,
        "pad_last_batch": not shuffle,
    }

    def make() -> tuple[Any, Any]:
        from nvidia.dali import fn

        encoded, label_text = fn.readers.webdataset(name=READER_NAME, **arguments)
        return encoded, parse_label(label_text, label_digits)

    return make


def parse_label(text: Any, digits: int) -> Any:
    """The int32 label (shape (1,), like `fn.readers.file`'s) of a `digits`-wide ASCII
    decimal number, computed in the graph: each byte minus '0', times its place value."""
    from nvidia.dali import fn, types

    places = types.Constant(np.array([10**p for p in reversed(range(digits))], np.int32))
    values = (fn.cast(text, dtype=types.INT32) - ord("0")) * places
    return fn.reshape(fn.cast(fn.reductions.sum(values), dtype=types.INT32), shape=[1])


def derive_seed(*numbers: int) -> int:
    """A DALI seed (< 2**31) mixed from the given integers."""
    entropy = [n % 2**63 for n in numbers]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] % 2**31)
