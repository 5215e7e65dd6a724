"""One rank's view of a split, as the reader each epoch's pipeline starts with.

The loader (`data/loader.py`) decides how many batches an epoch has and what is done to the
images; a split reader decides which encoded images of the split this rank reads in an epoch,
in which order, and through which DALI reader. A prepared data set names its kind of reader
(`layout.reader`); `SPLIT_READERS` maps that name to the class that builds it:

* `file`: an image folder (local, or in a bucket) through `fn.readers.file` and a file list;
* `webdataset`: tar shards packed by `resnetctl data pack` (`data/shards/`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from resnetctl.data.imagefolder import Split
from resnetctl.data.readers import ReaderFactory, file_reader
from resnetctl.data.scratch import ScratchFile
from resnetctl.data.shards.reading import ShardSplit


class SplitReader(Protocol):
    """The reader of one rank's part of a split, epoch by epoch."""

    def reader(self, epoch: int, reader_seed: int) -> ReaderFactory:
        """The reader factory of `epoch`. `reader_seed` is equal on every rank and differs
        between epochs."""
        ...


class FolderSplit:
    """A split of an image folder (a `DatasetLayout`), read with `fn.readers.file`.

    Training: the split is permuted from (seed, epoch), identically on every rank, and cut to
    `keep` files, which DALI's reader shards by rank. Otherwise: the layout's own file list,
    DALI's shards covering every file exactly once.
    """

    def __init__(
        self,
        layout: Any,
        split: Split,
        *,
        shuffled: bool,
        keep: int,
        shard_id: int,
        num_shards: int,
        seed: int,
        batch_size: int,
        source: Any = None,
    ) -> None:
        del source  # an image folder has no reading options
        self.layout = layout
        self.split: Split = split
        self.shuffled = shuffled
        self.keep = keep
        self.shard_id = shard_id
        self.num_shards = num_shards
        self.seed = seed
        self.batch_size = batch_size
        self._lines: list[bytes] | None = None
        self._list_file: ScratchFile | None = None

    def reader(self, epoch: int, reader_seed: int) -> ReaderFactory:
        """`fn.readers.file` over this epoch's file list, sharded by rank."""
        return file_reader(
            str(self.layout.split_dir(self.split)),
            str(self._file_list(epoch)),
            batch_size=self.batch_size,
            shard_id=self.shard_id,
            num_shards=self.num_shards,
            shuffle=self.shuffled,
            seed=reader_seed,
        )

    def _file_list(self, epoch: int) -> Path:
        """Training: this epoch's permuted and truncated file list (same on every rank)."""
        if not self.shuffled:
            return self.layout.split_list(self.split)
        if self._lines is None:
            self._lines = self.layout.split_list(self.split).read_bytes().splitlines(keepends=True)
            self._list_file = ScratchFile("resnetctl-epoch-list")
        assert self._list_file is not None
        order = np.random.default_rng([self.seed % 2**63, epoch]).permutation(len(self._lines))
        return self._list_file.write(b"".join(self._lines[i] for i in order[: self.keep]))


#: `layout.reader` -> the split reader class. A new kind of prepared data set registers here.
SPLIT_READERS: dict[str, type] = {
    "file": FolderSplit,
    "webdataset": ShardSplit,
}


def split_reader(layout: Any, split: Split, **options: Any) -> SplitReader:
    """The split reader of `layout`'s kind for `split` (options: see `FolderSplit`)."""
    kind = layout.reader
    try:
        cls = SPLIT_READERS[kind]
    except KeyError:
        known = sorted(SPLIT_READERS)
        raise ValueError(f"no split reader for {kind!r} data sets; known: {known}") from None
    return cls(layout, split, **options)
