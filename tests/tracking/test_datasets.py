"""The train and validation inputs as MLflow datasets: what rank 0 describes of its data."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnetctl.spec.data import ImageFolderSource, SyntheticSource
from resnetctl.tracking.datasets import data_name, describe_splits


@pytest.fixture
def layout(tmp_path: Path):
    from resnetctl.data.synthetic import prepare_synthetic

    source = SyntheticSource(
        num_classes=3, train_per_class=4, val_per_class=2, image_size=(8, 8), cache_dir=tmp_path
    )
    return source, prepare_synthetic(source)


def test_each_split_is_described_with_its_counts_and_a_digest_of_its_files(layout) -> None:
    source, prepared = layout
    described = describe_splits(prepared, source)
    train, val = described["train"], described["val"]
    assert (train["name"], val["name"]) == ("synthetic/train", "synthetic/val")
    assert (train["images"], val["images"], train["classes"]) == (12, 6, 3)
    assert train["source"] == str(prepared.train_dir) and train["source_type"] == "local"
    assert train["digest"] != val["digest"] and len(train["digest"]) == 12
    # The digest follows the file list: a relabelled image changes it, a re-description not.
    assert describe_splits(prepared, source) == described
    listing = Path(prepared.train_list)
    first, rest = listing.read_text().split("\n", 1)
    path, label = first.rsplit(" ", 1)
    listing.write_text(f"{path} {(int(label) + 1) % 3}\n{rest}")
    assert describe_splits(prepared, source)["train"]["digest"] != train["digest"]


def test_an_image_folder_is_named_after_its_folder() -> None:
    assert data_name(ImageFolderSource(root="/data/imagenet")) == "imagenet"
    assert data_name(ImageFolderSource(root="s3://bucket/sets/tiny/")) == "tiny"


def test_packed_shards_are_described_from_their_manifest(tmp_path: Path) -> None:
    from resnetctl.data.shards.manifest import prepare_shards
    from resnetctl.spec.data import ShardsSource
    from tests.data.shards._helpers import digits_folder, pack_folder

    manifest = pack_folder(digits_folder(), tmp_path / "digits-shards", 1 << 20).manifest
    source = ShardsSource(root=tmp_path / "digits-shards")
    assert data_name(source) == "digits-shards"
    assert data_name(ShardsSource(root="s3://bucket/imagenet-shards")) == "imagenet-shards"
    described = describe_splits(prepare_shards(source), source)
    for split, images in (("train", 1437), ("val", 360)):
        assert described[split] == {
            "name": f"digits-shards/{split}",
            "source": str(tmp_path / "digits-shards"),
            "source_type": "local",
            "digest": manifest.splits[split].digest[:12],
            "images": images,
            "classes": 10,
        }
