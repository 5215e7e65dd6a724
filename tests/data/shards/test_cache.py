"""The node's copies of shards: downloaded whole, once, checked; never half a file."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from resnetctl.data import DataError
from resnetctl.data.shards import cache
from resnetctl.storage import StoragePath


def test_a_shard_is_copied_once_and_checked(tmp_path: Path, monkeypatch) -> None:
    remote = tmp_path / "remote"
    (remote / "train").mkdir(parents=True)
    data = bytes(range(256)) * 5000
    (remote / "train" / "000000.tar").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    root, folder = StoragePath.of(remote), tmp_path / "cache"
    downloads = []
    real = cache._download
    monkeypatch.setattr(
        cache, "_download", lambda *args: (downloads.append(args[0]), real(*args))[1]
    )
    threads = [
        threading.Thread(target=cache.local_copy, args=(root, "train/000000.tar", folder),
                         kwargs={"sha256": digest})
        for _ in range(4)
    ]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(downloads) == 1  # the others waited for it, then used it
    assert (folder / "train" / "000000.tar").read_bytes() == data
    assert [p.name for p in (folder / "train").iterdir() if not p.name.startswith(".")] == [
        "000000.tar"
    ]
    copies = cache.local_copies(root, [("train/000000.tar", digest)], folder)
    assert copies == [folder / "train" / "000000.tar"] and len(downloads) == 1


def test_a_shard_that_changed_after_packing_is_refused_and_not_kept(tmp_path: Path) -> None:
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "a.tar").write_bytes(b"changed")
    root, folder = StoragePath.of(tmp_path / "remote"), tmp_path / "cache"
    with pytest.raises(DataError, match="a.tar: SHA-256 .* differs from the manifest's"):
        cache.local_copy(root, "a.tar", folder, sha256="0" * 64)
    assert not (folder / "a.tar").exists()
    assert [p.name for p in folder.iterdir()] == [".a.tar.lock"]  # no half-written copy
    with pytest.raises(DataError, match="b.tar: missing"):
        cache.local_copy(root, "b.tar", folder)
