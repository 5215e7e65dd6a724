"""Sources on disk: digits, synthetic, image folders and everything that can be wrong with them."""

from __future__ import annotations

import os
import threading
import typing
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnetctl.data import DataError, prepare_dataset
from resnetctl.data import imagefolder as imf
from resnetctl.data.sources import PREPARERS
from resnetctl.spec.data import (
    DataSource,
    DataSpec,
    DigitsSource,
    ImageFolderSource,
    SyntheticSource,
)
from tests.data._helpers import index_folder, save, smooth_pixels


def _folder_spec(root: Path) -> DataSpec:
    return DataSpec(source=ImageFolderSource(root=root))


def _list_names(path: Path) -> list[str]:
    return [line.rsplit(" ", 1)[0] for line in path.read_text().splitlines()]


def test_registry_covers_every_source_kind() -> None:
    kinds = {
        typing.get_args(member.model_fields["kind"].annotation)[0]
        for member in typing.get_args(typing.get_args(DataSource)[0])
    }
    assert set(PREPARERS) == kinds


def test_digits_all_images_ten_classes_disjoint_stratified() -> None:
    layout = prepare_dataset(DataSpec(source=DigitsSource(image_size=16, val_fraction=0.2)))
    assert layout.classes == tuple(str(d) for d in range(10))
    assert (layout.train_files, layout.val_files) == (1437, 360)
    train = {Path(n).stem: Path(n).parent.name for n in _list_names(layout.train_list)}
    val = {Path(n).stem: Path(n).parent.name for n in _list_names(layout.val_list)}
    assert not set(train) & set(val)
    assert sorted(int(i) for i in set(train) | set(val)) == list(range(1797))
    per_class = Counter(train.values()) + Counter(val.values())
    val_per_class = Counter(val.values())
    for digit, total in per_class.items():
        assert abs(val_per_class[digit] - 0.2 * total) <= 1, digit
    with Image.open(layout.train_dir / "0" / f"{next(iter(train))}.png") as im:
        assert (im.mode, im.size) == ("RGB", (16, 16))
    # Written once: preparing again reuses the tree (same root, same files).
    mtime = layout.train_dir.stat().st_mtime_ns
    again = prepare_dataset(DataSpec(source=DigitsSource(image_size=16, val_fraction=0.2)))
    assert again == layout and layout.train_dir.stat().st_mtime_ns == mtime


def test_publish_tree_two_writers_one_complete_tree(tmp_path: Path) -> None:
    final = tmp_path / "cache" / "tree"
    both_writing = threading.Barrier(2)
    seen: list[Path] = []

    def write(tmp: Path) -> None:
        (tmp / "train").mkdir()
        both_writing.wait(timeout=10)  # both temporary trees exist before either renames
        for i in range(20):
            (tmp / "train" / f"{i}.txt").write_text(str(i))

    def worker() -> None:
        seen.append(imf.publish_tree(final, write))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [final, final]
    assert len(list((final / "train").iterdir())) == 20
    assert [p.name for p in final.parent.iterdir()] == ["tree"]  # the loser's copy is gone


def test_synthetic_is_deterministic_and_class_dependent() -> None:
    def make(seed: int):
        return prepare_dataset(
            DataSpec(
                source=SyntheticSource(
                    num_classes=3,
                    train_per_class=2,
                    val_per_class=1,
                    image_size=(20, 24),
                    seed=seed,
                )
            )
        )

    a, b, c = make(0), make(0), make(1)
    assert a == b and (a.train_files, a.val_files, len(a.classes)) == (6, 3, 3)
    first = sorted(a.train_dir.rglob("*.jpg"))[0]
    assert first.read_bytes() != (c.root / first.relative_to(a.root)).read_bytes()
    with Image.open(first) as im:
        assert im.size == (24, 20)
    means = []
    for cls in a.classes:
        pixels = [np.asarray(Image.open(p), float) for p in (a.train_dir / cls).glob("*.jpg")]
        means.append(np.mean([px.mean(axis=(0, 1)) for px in pixels], axis=0))
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(means[i] - means[j]).max() > 30  # colours tell classes apart


def test_imagefolder_layout_and_file_lists(tmp_path: Path) -> None:
    root = index_folder(tmp_path / "data", train=6, val=4, classes=2)
    layout = prepare_dataset(_folder_spec(root))
    assert layout.classes == ("c0", "c1")
    assert (layout.train_files, layout.val_files) == (6, 4)
    lines = layout.train_list.read_text().splitlines()
    assert lines[0] == "c0/0000.png 0" and "c1/0001.png 1" in lines


def test_class_mismatch_names_missing_and_extra_classes(tmp_path: Path) -> None:
    root = index_folder(tmp_path / "data", train=6, val=4, classes=2)
    save(root / "train" / "cats" / "x.png", smooth_pixels(8, 8, 0))
    save(root / "val" / "dogs" / "y.png", smooth_pixels(8, 8, 1))
    with pytest.raises(DataError) as err:
        prepare_dataset(_folder_spec(root))
    message = str(err.value)
    assert "missing from" in message and "cats" in message
    assert "only in" in message and "dogs" in message
    assert str(root / "val") in message


@pytest.mark.parametrize("missing", ["train", "val"])
def test_missing_split_names_the_folder(tmp_path: Path, missing: str) -> None:
    root = index_folder(tmp_path / "data", train=4, val=4)
    for p in sorted((root / missing).rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (root / missing).rmdir()
    with pytest.raises(DataError, match=str(root / missing)):
        prepare_dataset(_folder_spec(root))


def test_empty_split_and_empty_class_folder(tmp_path: Path) -> None:
    root = index_folder(tmp_path / "data", train=4, val=4)
    (root / "val" / "c0" / "0000.png").unlink()
    (root / "val" / "c0" / "0002.png").unlink()
    with pytest.raises(DataError, match=f"{root / 'val' / 'c0'}"):
        prepare_dataset(_folder_spec(root))
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    with pytest.raises(DataError, match=f"{empty / 'train'}: no class folders"):
        prepare_dataset(_folder_spec(empty))


def test_bad_files_are_skipped_with_a_warning_naming_them(tmp_path: Path) -> None:
    root = index_folder(tmp_path / "data", train=6, val=4)
    good = save(root / "train" / "c0" / "photo.jpg", smooth_pixels(32, 32, 3))
    truncated = root / "train" / "c0" / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = root / "train" / "c1" / "garbage.jpg"
    garbage.write_bytes(b"this is not a jpeg at all" * 10)
    empty = root / "val" / "c1" / "empty.png"
    empty.write_bytes(b"")
    notes = root / "train" / "c1" / "notes.txt"
    notes.write_text("hello")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layout = prepare_dataset(_folder_spec(root))
    messages = "\n".join(str(w.message) for w in caught)
    for bad, why in (
        (truncated, "truncated"),
        (garbage, "not an image"),
        (empty, "empty"),
        (notes, "not an image file"),
    ):
        assert f"{bad}: skipped, {why}" in messages
    names = _list_names(layout.train_list) + _list_names(layout.val_list)
    assert "c0/photo.jpg" in names
    assert not {"c0/truncated.jpg", "c1/garbage.jpg", "c1/empty.png", "c1/notes.txt"} & set(names)
    assert set(layout.skipped) == {truncated, garbage, empty, notes}
    assert (layout.train_files, layout.val_files) == (7, 4)


def test_corrupt_data_with_valid_markers_is_caught_by_the_full_decode(tmp_path: Path) -> None:
    path = save(tmp_path / "x.png", smooth_pixels(16, 16, 0))
    data = bytearray(path.read_bytes())
    data[40:60] = b"\x00" * 20  # inside the IDAT chunk: header and IEND stay intact
    path.write_bytes(bytes(data))
    assert imf.check_image(path, full_decode=False) is None
    assert "cannot be decoded" in imf.check_image(path, full_decode=True)


def test_scan_is_cached_until_a_folder_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = index_folder(tmp_path / "data", train=4, val=2)
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        os.utime(folder, ns=(10**18, 10**18))  # settled: older than the racy window
    monkeypatch.setenv("RESNETCTL_CACHE", str(tmp_path / "cache"))
    first = prepare_dataset(_folder_spec(root))
    checked: list[Path] = []
    real = imf.check_image

    def spy(path: Path, *, full_decode: bool) -> str | None:
        checked.append(path)
        return real(path, full_decode=full_decode)

    monkeypatch.setattr(imf, "check_image", spy)
    assert prepare_dataset(_folder_spec(root)) == first
    assert checked == []
    save(root / "train" / "c1" / "new.png", smooth_pixels(8, 8, 5))
    assert prepare_dataset(_folder_spec(root)).train_files == 5
    assert len(checked) == 5  # the changed split only
