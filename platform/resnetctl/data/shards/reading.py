"""One rank's part of a packed split, read with DALI's `fn.readers.webdataset`.

Shares. The split's samples, in the manifest's order (shards one after another, each front to
back), are cut into `num_shards` contiguous shares: rank r reads samples
[N r / W, N (r + 1) / W), as DALI's own sharding would, so shares differ by at most one
sample. A share usually starts and ends inside a shard: the rank reads those shards through
index files cut to its samples (DALI reads only the samples an index lists), so it reads, and
stages, only its own shards. The shares are fixed for a run; `pack` shuffled the samples, so
each share is a random part of the split.

An epoch (training). The rank reads its shards in an order permuted anew every epoch, each
shard front to back, and DALI draws every sample at random from a buffer of
`data.source.shuffle_buffer` samples. The loader stops after `len(loader)` batches, which is
the same on every rank (floor(N / W / batch)): each sample is seen at most once per epoch, and
the few a rank has beyond that (fewer than one batch, plus one where shares differ) sit that
epoch out: those still unread or in the buffer when it ends, different ones each epoch.
Validation reads the share in order and pads its last batch, as for image folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resnetctl.data.imagefolder import DataError, Split
from resnetctl.data.readers import ReaderFactory, derive_seed, webdataset_reader
from resnetctl.data.scratch import ScratchFile
from resnetctl.data.shards.cache import cache_folder, local_copies
from resnetctl.data.shards.manifest import ShardEntry, ShardLayout

#: `data.source.shuffle_buffer` when the source does not say (a layout read by other code).
DEFAULT_BUFFER = 1024


@dataclass(frozen=True)
class Piece:
    """Samples [first, stop) of one shard, in its stored order."""

    shard: ShardEntry
    first: int
    stop: int


def share_pieces(shards: tuple[ShardEntry, ...], shard_id: int, num_shards: int) -> list[Piece]:
    """The pieces of shards holding rank `shard_id`'s share of the samples."""
    total = sum(s.images for s in shards)
    start, end = total * shard_id // num_shards, total * (shard_id + 1) // num_shards
    pieces, offset = [], 0
    for shard in shards:
        first, stop = max(start - offset, 0), min(end - offset, shard.images)
        if first < stop:
            pieces.append(Piece(shard, first, stop))
        offset += shard.images
    return pieces


class ShardSplit:
    """Rank `shard_id`'s share of a packed split (a `ShardLayout`), through
    `fn.readers.webdataset`. Options as `data.splits.FolderSplit`; `source` is the spec's
    `data.source` (its `shuffle_buffer` and `stage`)."""

    def __init__(
        self,
        layout: ShardLayout,
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
        del keep, batch_size, seed  # every rank's share already holds whole batches to spare
        self.layout = layout
        self.split: Split = split
        self.shuffled = shuffled
        self.shard_id = shard_id
        self.pieces = share_pieces(layout.shards(split), shard_id, num_shards)
        if not self.pieces:
            raise DataError(
                f"{layout.split_dir(split)}: {layout.split_files(split)} images are too few for "
                f"{num_shards} shards"
            )
        share = sum(p.stop - p.first for p in self.pieces)
        buffer = getattr(source, "shuffle_buffer", DEFAULT_BUFFER)
        # A buffer larger than the share would make the reader read past its end at once.
        self.buffer = max(1, min(buffer, share))
        self.stage = bool(getattr(source, "stage", True)) and not layout.root.is_local
        self._files: tuple[list[str], list[str]] | None = None
        self._index_files: list[ScratchFile] = []

    def reader(self, epoch: int, reader_seed: int) -> ReaderFactory:
        """The webdataset reader of this epoch: the share's shards in this epoch's order."""
        tars, indexes = self._prepare()
        order = range(len(self.pieces))
        if self.shuffled:
            order = np.random.default_rng([reader_seed, self.shard_id]).permutation(len(order))
        return webdataset_reader(
            [tars[i] for i in order],
            [indexes[i] for i in order],
            label_digits=self.layout.manifest.label_digits,
            shuffle=self.shuffled,
            buffer=self.buffer,
            seed=derive_seed(reader_seed, self.shard_id, 2),
        )

    def _prepare(self) -> tuple[list[str], list[str]]:
        """Once: the share's index files, cut to its samples, in a temporary folder; its
        shards staged into the node's cache when asked (else read where they are)."""
        if self._files is not None:
            return self._files
        root = self.layout.root
        if root.is_local:
            index_texts = [Path(str(root / p.shard.index)).read_text() for p in self.pieces]
        else:
            folder = cache_folder(self.layout.manifest.digest)
            copies = local_copies(root, [(p.shard.index, None) for p in self.pieces], folder)
            index_texts = [path.read_text() for path in copies]
        indexes = []
        self._index_files = []
        for piece, text in zip(self.pieces, index_texts, strict=True):
            scratch = ScratchFile("resnetctl-shard-index")
            self._index_files.append(scratch)  # kept open as long as the reader may read it
            cut = cut_index(text, piece, str(root / piece.shard.index))
            indexes.append(str(scratch.write(cut.encode())))
        if self.stage:
            folder = cache_folder(self.layout.manifest.digest)
            wanted = [(p.shard.tar, p.shard.sha256) for p in self.pieces]
            tars = [str(path) for path in local_copies(root, wanted, folder)]
        else:
            tars = [str(root / p.shard.tar) for p in self.pieces]
        self._files = (tars, indexes)
        return self._files


def cut_index(text: str, piece: Piece, where: str) -> str:
    """A DALI index (`v1.2 N` then one line per sample) listing samples [first, stop) only."""
    header, *lines = text.splitlines()
    version, _, count = header.partition(" ")
    if not version.startswith("v1.") or not count.isdigit() or int(count) != len(lines):
        raise DataError(f"{where}: not a DALI index of {len(lines)} samples ({header!r})")
    if len(lines) != piece.shard.images:
        raise DataError(f"{where}: {len(lines)} samples, the manifest says {piece.shard.images}")
    kept = lines[piece.first : piece.stop]
    return f"{version} {len(kept)}\n" + "".join(line + "\n" for line in kept)
