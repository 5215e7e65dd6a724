"""The manifest: read alone at start-up, refused with the file and the fault named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnetctl.data import DataError, prepare_dataset
from resnetctl.data.shards.manifest import MANIFEST, Manifest, read_manifest
from resnetctl.spec.data import DataSpec, ShardsSource
from resnetctl.storage import StoragePath
from tests.data.shards._helpers import digits_folder, pack_folder


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("manifest") / "digits"
    pack_folder(digits_folder(), root, 1 << 20)
    return root


def test_the_manifest_round_trips_and_gives_the_layout(packed: Path) -> None:
    text = (packed / MANIFEST).read_text()
    manifest = Manifest.from_json(text, "x")
    assert manifest.to_json() == text
    layout = prepare_dataset(DataSpec(source=ShardsSource(root=packed)))
    assert layout.manifest == manifest and layout.num_classes == 10
    assert layout.first_image_size() == (32, 32)
    facts = layout.describe("val")
    assert facts == {
        "source": str(packed),
        "digest": manifest.splits["val"].digest,
        "images": 360,
        "classes": 10,
        "shards": len(manifest.splits["val"].shards),
    }


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(format=7), "format 7, expected 1"),
        (lambda m: m.pop("classes"), "malformed manifest .*classes"),
        (lambda m: m["splits"]["val"].update(shards=[]), "no val shards"),
        (lambda m: m["splits"]["train"].update(images=5), "train: shard image counts"),
    ],
)
def test_a_broken_manifest_is_refused_naming_the_file(packed: Path, tmp_path: Path, edit, message):
    payload = json.loads((packed / MANIFEST).read_text())
    edit(payload)
    (tmp_path / MANIFEST).write_text(json.dumps(payload))
    with pytest.raises(DataError, match=f"{tmp_path / MANIFEST}: {message}"):
        read_manifest(StoragePath.of(tmp_path))
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(DataError, match="not JSON"):
        read_manifest(StoragePath.of(tmp_path))


def test_a_folder_without_a_manifest_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"{tmp_path}/manifest.json: no such file: is {tmp_path} a"):
        prepare_dataset(DataSpec(source=ShardsSource(root=tmp_path)))
