"""`resnetctl data pack` into a folder: every usable image once, with its label, in tar shards
DALI can index; the manifest's counts; corrupt files named and left out; a resumed pack; bad
input refused with exit 2."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resnetctl.cli.app import app
from resnetctl.data import DataError, prepare_dataset
from resnetctl.data.shards.manifest import MANIFEST, read_manifest
from resnetctl.data.shards.pack import DONE
from resnetctl.spec.data import DataSpec, SyntheticSource
from resnetctl.storage import StoragePath
from tests.data.shards._helpers import digits_folder, pack_folder, tar_samples

SHARD = 256 << 10


def _source_samples(root: Path, split: str) -> Counter:
    """(SHA-256 of the file, class index) of every image of a split folder."""
    classes = sorted(p.name for p in (root / "train").iterdir())
    return Counter(
        (hashlib.sha256(path.read_bytes()).hexdigest(), classes.index(path.parent.name))
        for path in (root / split).rglob("*")
        if path.is_file()
    )


def _packed_samples(dst: Path, split: str) -> Counter:
    found: Counter = Counter()
    for shard in read_manifest(StoragePath.of(dst)).splits[split].shards:
        for members in tar_samples(dst / shard.tar).values():
            (image,) = [data for ext, data in members.items() if ext != "cls"]
            found[(hashlib.sha256(image).hexdigest(), int(members["cls"]))] += 1
    return found


def test_the_digits_pack_into_shards_holding_every_image_once_with_its_label(
    tmp_path: Path,
) -> None:
    from wds2idx import IndexCreator  # DALI's own index tool

    source = digits_folder()
    result = pack_folder(source, tmp_path / "packed", SHARD)
    manifest = result.manifest
    assert manifest.classes == tuple(str(d) for d in range(10))
    for split in ("train", "val"):
        expected = _source_samples(source, split)
        assert _packed_samples(tmp_path / "packed", split) == expected
        per_class = Counter(label for (_, label), n in expected.items() for _ in range(n))
        assert manifest.splits[split].per_class == {str(c): per_class[c] for c in range(10)}
    assert (manifest.splits["train"].images, manifest.splits["val"].images) == (1437, 360)
    train = manifest.splits["train"].shards
    assert len(train) > 4 and all(s.bytes <= SHARD for s in train)
    # Shuffled before cutting: one shard holds every class, not a run of one class.
    first = tar_samples(tmp_path / "packed" / train[0].tar)
    assert {int(m["cls"]) for m in first.values()} == set(range(10))
    # The index is the one DALI's wds2idx makes of the same tar.
    for shard in (train[0], manifest.splits["val"].shards[-1]):
        reference = tmp_path / "reference.idx"
        tar = str(tmp_path / "packed" / shard.tar)
        with IndexCreator(tar, str(reference), verbose=False) as creator:
            creator.create_index()
        assert (tmp_path / "packed" / shard.index).read_text() == reference.read_text()
    assert result.manifest.image_size == {"min": [32, 32], "max": [32, 32]}
    assert not (tmp_path / "packed" / ".pack").exists()  # the bookkeeping is gone


def test_the_same_folder_packs_to_the_same_bytes_and_digest(tmp_path: Path) -> None:
    source = digits_folder()
    a = pack_folder(source, tmp_path / "a", 1 << 20)
    b = pack_folder(source, tmp_path / "b", 1 << 20)
    assert (tmp_path / "a" / MANIFEST).read_bytes() == (tmp_path / "b" / MANIFEST).read_bytes()
    assert a.manifest.digest == b.manifest.digest
    other_seed = pack_folder(source, tmp_path / "c", 1 << 20, seed=1).manifest
    assert other_seed.digest != a.manifest.digest  # another shuffle, other shards


def _synthetic(tmp_path: Path) -> Path:
    """A generated JPEG set (5 classes, 12 train and 4 val images each, 40x56), copied."""
    spec = DataSpec(
        source=SyntheticSource(
            num_classes=5, train_per_class=12, val_per_class=4, image_size=(40, 56), seed=2
        )
    )
    root = tmp_path / "jpegs"
    shutil.copytree(prepare_dataset(spec).root, root)
    return root


def test_a_generated_multi_class_jpeg_set_packs_with_its_classes_and_sizes(
    tmp_path: Path,
) -> None:
    root = _synthetic(tmp_path)
    manifest = pack_folder(root, tmp_path / "packed", 64 << 10).manifest
    assert manifest.classes == tuple(f"class_{c:05d}" for c in range(5))
    assert manifest.splits["train"].per_class == dict.fromkeys(manifest.classes, 12)
    assert manifest.splits["val"].per_class == dict.fromkeys(manifest.classes, 4)
    assert manifest.image_size == {"min": [40, 56], "max": [40, 56]}
    for split in ("train", "val"):
        assert _packed_samples(tmp_path / "packed", split) == _source_samples(root, split)
    shard = manifest.splits["train"].shards[0]
    assert {ext for m in tar_samples(tmp_path / "packed" / shard.tar).values() for ext in m} == {
        "jpg",
        "cls",
    }


def test_corrupt_and_non_image_files_are_named_and_left_out(tmp_path: Path) -> None:
    root = _synthetic(tmp_path)
    good = (root / "train" / "class_00001" / "000000.jpg").read_bytes()
    bad = {
        # Passes the scan's header and end-marker checks; fails only when decoded.
        "train/class_00001/broken.jpg": good[:300] + bytes(2000) + b"\xff\xd9",
        "train/class_00002/truncated.jpg": good[: len(good) // 2],
        "val/class_00003/notes.jpg": b"not an image at all\n",
        "train/class_00000/readme.txt": b"hello",
    }
    for relative, data in bad.items():
        (root / relative).write_bytes(data)
    result = CliRunner().invoke(
        app, ["data", "pack", str(root), str(tmp_path / "packed"), "--shard-size=64KiB", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    reasons = {item["path"]: item["reason"] for item in payload["skipped"]}
    assert set(reasons) == set(bad)
    assert reasons["train/class_00001/broken.jpg"].startswith("cannot be decoded")
    assert reasons["train/class_00002/truncated.jpg"] == "truncated JPEG (no end marker)"
    assert reasons["val/class_00003/notes.jpg"].startswith("not an image")
    assert reasons["train/class_00000/readme.txt"] == "not an image file (extension)"
    assert payload["splits"]["train"]["images"] == 5 * 12  # the good ones, no more
    assert payload["splits"]["val"]["images"] == 5 * 4
    manifest = read_manifest(StoragePath.of(tmp_path / "packed"))
    assert {item["path"] for item in manifest.skipped} == set(bad)
    # The terminal summary names each of them too.
    shutil.rmtree(tmp_path / "packed")
    human = CliRunner().invoke(app, ["data", "pack", str(root), str(tmp_path / "packed")])
    assert human.exit_code == 0, human.stderr
    assert "4 file(s) left out" in human.stdout
    assert "train/class_00001/broken.jpg: cannot be decoded" in human.stdout


class _Interrupt(Exception):
    pass


def test_an_interrupted_pack_resumes_without_touching_finished_shards(tmp_path: Path) -> None:
    source = digits_folder()
    dst = tmp_path / "packed"
    finished: list[str] = []

    def stop_after_three(record: dict) -> None:
        finished.append(record["name"])
        if len(finished) == 3:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        pack_folder(source, dst, SHARD, progress=stop_after_three)
    assert not (dst / MANIFEST).exists()
    assert sorted(p.stem for p in (dst / DONE).iterdir()) == [
        name.replace("/", "-") for name in sorted(finished)
    ]
    # A crash in the middle of the next shard leaves half a tar and no record.
    (dst / "train" / "000003.tar").write_bytes(b"half a tar")
    before = {name: os.stat(dst / f"{name}.tar").st_mtime_ns for name in finished}
    resumed = pack_folder(source, dst, SHARD)
    assert resumed.reused == 3
    assert {r["name"] for r in resumed.packed}.isdisjoint(finished)
    assert {name: os.stat(dst / f"{name}.tar").st_mtime_ns for name in finished} == before
    # The result is the pack an uninterrupted run makes.
    whole = pack_folder(source, tmp_path / "whole", SHARD)
    assert resumed.manifest == whole.manifest
    # Packing a finished destination again does nothing.
    again = pack_folder(source, dst, SHARD)
    assert again.already_packed and again.manifest == whole.manifest


def _pack_cli(*args: str):
    return CliRunner().invoke(app, ["data", "pack", *args])


def test_bad_input_is_refused_with_the_reason_and_exit_2(tmp_path: Path) -> None:
    source = digits_folder()
    missing = _pack_cli(str(tmp_path / "nope"), str(tmp_path / "out"))
    assert missing.exit_code == 2 and f"{tmp_path / 'nope'}: no such folder" in missing.stderr
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "train").mkdir()
    no_val = _pack_cli(str(tmp_path / "flat"), str(tmp_path / "out"))
    assert no_val.exit_code == 2
    assert f"{tmp_path / 'flat' / 'train'}: no class folders" in no_val.stderr
    assert not (tmp_path / "out").exists()  # nothing written for a refused pack
    size = _pack_cli(str(source), str(tmp_path / "out"), "--shard-size", "lots")
    assert size.exit_code == 2 and "--shard-size: 'lots' is not a size" in size.stderr
    tiny = _pack_cli(str(source), str(tmp_path / "out"), "--shard-size", "1KiB")
    assert tiny.exit_code == 2 and "below the smallest shard" in tiny.stderr
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.pdf").write_bytes(b"%PDF")
    busy = _pack_cli(str(source), str(tmp_path / "busy"))
    assert busy.exit_code == 2 and "not empty, and not a pack in progress" in busy.stderr
    (tmp_path / "a-file").write_text("")
    onto_file = _pack_cli(str(source), str(tmp_path / "a-file"))
    assert onto_file.exit_code == 2 and f"{tmp_path / 'a-file'}: cannot write there" in (
        onto_file.stderr
    )
    http = _pack_cli(str(source), str(tmp_path / "out"), "--address", "http://127.0.0.1:8265")
    assert http.exit_code == 2 and "GCS address" in http.stderr
    # Finished with one shard size, asked again with another: refused, not mixed.
    assert _pack_cli(str(source), str(tmp_path / "out"), "--shard-size", "1MiB").exit_code == 0
    other = _pack_cli(str(source), str(tmp_path / "out"), "--shard-size", "2MiB")
    assert other.exit_code == 2
    assert "shard_bytes 1048576 there, 2097152 now" in other.stderr


def test_an_unfinished_pack_with_other_options_is_not_resumed(tmp_path: Path) -> None:
    source = digits_folder()
    with pytest.raises(_Interrupt):
        pack_folder(source, tmp_path / "p", SHARD, progress=lambda record: _raise())
    with pytest.raises(DataError, match="unfinished pack with other options .*seed 0 there, 4"):
        pack_folder(source, tmp_path / "p", SHARD, seed=4)


def _raise() -> None:
    raise _Interrupt
