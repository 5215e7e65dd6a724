"""Writing one WebDataset tar shard and its DALI index.

A sample is two tar members, `KEY.<image extension>` and `KEY.cls` (the label as zero-padded
ASCII digits); the index lists, per sample, each member's extension, data offset, size and
name (DALI's `v1.2` format, what its `wds2idx` tool writes). Members carry no owner and a
fixed time, so the same samples always give the same bytes, and so the same digest.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from resnetctl.data.readers import SHARD_LABEL_EXTENSION

INDEX_VERSION = "v1.2"


@dataclass(frozen=True)
class Sample:
    """One image and its label, under the key it gets in the tar."""

    key: str
    extension: str  # of the image member, lower case, no dot
    data: bytes
    label: int


@dataclass(frozen=True)
class WrittenShard:
    """What writing a shard produced."""

    index: str  # the DALI index's text
    images: int
    bytes: int
    sha256: str


class _Counting:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.out.write(data)

    def tell(self) -> int:
        return self.size


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    return info


def write_shard(samples: Iterable[Sample], out: BinaryIO, label_digits: int) -> WrittenShard:
    """Write `samples` as a tar to `out`; returns the index text, counts and SHA-256."""
    counting = _Counting(out)
    lines: list[str] = []
    with tarfile.open(fileobj=counting, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for sample in samples:
            label = str(sample.label).zfill(label_digits).encode()
            if len(label) != label_digits:
                raise ValueError(f"label {sample.label} does not fit {label_digits} digits")
            parts = []
            members = ((sample.extension, sample.data), (SHARD_LABEL_EXTENSION, label))
            for extension, data in members:
                name = f"{sample.key}.{extension}"
                tar.addfile(_member(name, len(data)), io.BytesIO(data))
                # The data ends the member, padded to whole 512-byte blocks; whatever header
                # (a long name adds a PAX one) came before it.
                padded = -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
                parts.append(f"{extension} {tar.offset - padded} {len(data)} {name}")
            lines.append(" ".join(parts))
    index = f"{INDEX_VERSION} {len(lines)}\n" + "".join(line + "\n" for line in lines)
    return WrittenShard(index, len(lines), counting.size, counting.sha.hexdigest())
