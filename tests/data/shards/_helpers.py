"""Packing small image folders for the shard tests."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from resnetctl.data import prepare_dataset
from resnetctl.data.shards.pack import PackResult, pack
from resnetctl.data.shards.plan import PackOptions
from resnetctl.spec.data import DataSpec, DigitsSource


def digits_folder() -> Path:
    """The bundled digits as an image folder (written once into the test cache)."""
    return Path(prepare_dataset(DataSpec(source=DigitsSource())).root)


def pack_folder(
    source: Path | str, destination: Path | str, shard_bytes: int, seed: int = 0, **options
) -> PackResult:
    """`resnetctl data pack SOURCE DESTINATION --shard-size shard_bytes --seed seed`, in this
    process (`options`: `pack`'s callbacks)."""
    return pack(
        PackOptions(str(source), seed=seed, shard_bytes=shard_bytes), str(destination), **options
    )


def tar_samples(path: Path) -> dict[str, dict[str, bytes]]:
    """The members of a tar shard, grouped by sample key: {key: {extension: bytes}}."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(path.read_bytes())) as tar:
        for member in tar.getmembers():
            key, _, extension = member.name.partition(".")
            data = tar.extractfile(member)
            assert data is not None
            samples.setdefault(key, {})[extension] = data.read()
    return samples
