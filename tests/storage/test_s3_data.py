"""`data.source.root: s3://...`: the same classes, labels and file lists as the same folder on
disk, found by listing a real (loopback) S3 server; DALI decodes batches from the bucket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resnetctl.cli.app import app
from resnetctl.data import build_loader, prepare_dataset
from resnetctl.data.imagefolder import layout_for_folder
from resnetctl.data.inspect import inspect_dataset
from tests.data._helpers import cifar_spec, decode_indices, index_folder, index_pixels, save

TRAIN, VAL = 13, 7


def upload(folder: Path, bucket: str, prefix: str) -> str:
    import boto3

    client = boto3.client("s3")
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    return f"s3://{bucket}/{prefix}"


@pytest.fixture
def mirrored(tmp_path: Path, bucket: str) -> tuple[Path, str]:
    """The same image folder on disk and in the bucket, with a nested sub-folder, a hidden file
    and a non-image (the rules that decide what is a sample must agree)."""
    root = index_folder(tmp_path / "ds", train=TRAIN, val=VAL, classes=3)
    save(root / "train" / "c1" / "deeper" / "0100.png", index_pixels(100))
    save(root / "train" / "c1" / "0099.png", index_pixels(99))
    (root / "train" / "c0" / "notes.txt").write_text("not an image")
    (root / "train" / "c2" / ".hidden.png").write_bytes(b"x")
    return root, upload(root, bucket, "data/ds")


def test_a_bucket_has_the_classes_labels_and_file_lists_of_the_same_folder(
    mirrored, tmp_path: Path
) -> None:
    local_root, uri = mirrored
    local = layout_for_folder(local_root, cache=tmp_path / "cache-a")
    with pytest.warns(UserWarning, match="notes.txt: skipped"):
        remote = layout_for_folder(uri, cache=tmp_path / "cache-b")
    assert remote.classes == local.classes == ("c0", "c1", "c2")
    assert (remote.train_files, remote.val_files) == (local.train_files, local.val_files)
    assert remote.train_files == TRAIN + 2
    for split in ("train", "val"):
        assert remote.split_list(split).read_text() == local.split_list(split).read_text()
    assert str(remote.train_dir) == f"{uri}/train"
    # The listing is kept: a second prepare reads the cache, not the bucket.
    import boto3

    boto3.client("s3").delete_object(Bucket=uri.split("/")[2], Key="data/ds/val/c0/0000.png")
    again = layout_for_folder(uri, cache=tmp_path / "cache-b")
    assert again.val_files == local.val_files


def test_dali_decodes_batches_from_the_bucket_with_their_labels(mirrored) -> None:
    _, uri = mirrored
    spec = cifar_spec(Path("unused"))
    spec.source.root = uri  # a URI stays a URI through the spec's validation
    assert spec.source.root == uri
    layout = prepare_dataset(spec)
    loader = build_loader(spec, layout, "val", batch_size=4)
    indices, labels = [], []
    for images, batch_labels in loader:
        indices += decode_indices(images)
        labels += [int(v) for v in batch_labels]
    assert sorted(indices) == list(range(VAL))
    assert labels == [i % 3 for i in indices]  # c<i % 3> holds image i


def test_data_inspect_reads_a_bucket(mirrored) -> None:
    local_root, uri = mirrored
    on_disk = inspect_dataset(local_root)
    in_bucket = inspect_dataset(uri)
    assert in_bucket.classes == on_disk.classes
    assert [s.per_class for s in in_bucket.splits] == [s.per_class for s in on_disk.splits]
    assert in_bucket.image_size == on_disk.image_size  # headers read from the objects
    result = CliRunner().invoke(app, ["data", "inspect", uri, "--json"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["root"] == uri and payload["usable"] is True
    missing = CliRunner().invoke(app, ["data", "inspect", f"{uri}-nope"])
    assert missing.exit_code == 2 and f"{uri}-nope: no such file or folder" in missing.stderr


def test_the_driver_lists_a_bucket_once_for_every_worker(mirrored, tmp_path: Path) -> None:
    import boto3

    from resnetctl.data import DataError
    from resnetctl.data.objectstore import prelist
    from resnetctl.spec.data import ImageFolderSource

    local_root, uri = mirrored
    prelist(ImageFolderSource(root=uri))  # what `submit` does before any worker starts
    boto3.client("s3").delete_object(Bucket=uri.split("/")[2], Key="data/ds/val/c0/0000.png")
    with pytest.warns(UserWarning):
        layout = prepare_dataset(
            cifar_spec(Path("unused")).model_copy(update={"source": ImageFolderSource(root=uri)})
        )
    assert layout.val_files == VAL  # the workers read the driver's listing, not the bucket
    prelist(ImageFolderSource(root=local_root))  # a local folder: nothing to list
    with pytest.raises(DataError, match="folder does not exist"):
        prelist(ImageFolderSource(root=f"{uri}-gone"))
