"""Packed shards in a (loopback) bucket: packed there from a folder or from the bucket itself,
on Ray workers too, resumed without rewriting finished shards; read by DALI from node-local
copies or straight from the bucket with the same batches; a quickstart on them trains to the
quickstart's accuracy without one listing of the bucket."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from resnetctl.data import build_loader, prepare_dataset
from resnetctl.data.shards.cache import cache_folder
from resnetctl.data.shards.manifest import MANIFEST
from resnetctl.spec.data import DataSpec, ShardsSource
from tests.conftest import JOBS
from tests.data._helpers import decode_indices, index_folder
from tests.data.shards._helpers import digits_folder, pack_folder
from tests.launch.conftest import resnetctl, summary
from tests.processes import mlflow_client
from tests.storage.conftest import export_data

pytestmark = pytest.mark.slow

SHARD = 256 << 10


def _last_modified(s3, bucket: str, keys: list[str]) -> dict[str, tuple]:
    out = {}
    for key in keys:
        head = s3.client.head_object(Bucket=bucket, Key=key)
        out[key] = (head["LastModified"], head["ETag"])
    return out


def test_the_digits_pack_into_the_bucket_as_into_a_folder_and_resume_there(
    s3_server, bucket: str, tmp_path: Path
) -> None:
    source = digits_folder()
    local = pack_folder(source, tmp_path / "local", SHARD)
    uri = f"s3://{bucket}/digits"

    class Stop(Exception):
        pass

    finished: list[str] = []

    def stop_after_two(record: dict) -> None:
        finished.append(record["name"])
        if len(finished) == 2:
            raise Stop

    with pytest.raises(Stop):
        pack_folder(source, uri, SHARD, progress=stop_after_two)
    keys = [f"digits/{name}.tar" for name in finished]
    before = _last_modified(s3_server, bucket, keys)
    time.sleep(1.1)  # S3 times have whole seconds: a rewrite would show
    since = s3_server.log_size()
    resumed = pack_folder(source, uri, SHARD)
    shards = sum(len(entry.shards) for entry in local.manifest.splits.values())
    assert resumed.reused == 2 and len(resumed.packed) == shards - 2
    assert _last_modified(s3_server, bucket, keys) == before
    puts = [r for r in s3_server.requests(since) if r.startswith("PUT ")]
    assert not any(f"/{key}" in r for r in puts for key in keys)
    # The same bytes as the pack into a folder: the manifests are equal, byte for byte.
    in_folder = (tmp_path / "local" / MANIFEST).read_text()
    assert s3_server.read(bucket, f"digits/{MANIFEST}") == in_folder
    assert s3_server.keys(bucket, "digits/.pack") == []  # the bookkeeping is gone


def test_a_folder_in_the_bucket_packs_on_ray_workers_to_the_same_shards(
    s3_server, bucket: str, tmp_path: Path
) -> None:
    spec = {"source": {"kind": "synthetic", "num_classes": 4, "train_per_class": 24,
                       "val_per_class": 6, "image_size": [48, 40], "seed": 5}}  # fmt: skip
    folder = prepare_dataset(DataSpec.model_validate(spec)).root
    src = export_data(spec, bucket, "jpegs")  # the same folder, as objects
    on_disk = pack_folder(folder, tmp_path / "local", 64 << 10).manifest
    done = resnetctl(
        "data", "pack", src, f"s3://{bucket}/jpeg-shards", "--shard-size", "64KiB",
        "--address", "local", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["source"] == src
    assert result["digest"] == on_disk.digest  # listing order and bytes as on disk
    assert result["splits"]["train"]["images"] == 96 and result["splits"]["val"]["images"] == 24
    assert result["shards_packed_now"] == sum(len(s.shards) for s in on_disk.splits.values())
    assert len(result["workers"]) >= 2  # Ray tasks in more than one worker process
    assert "\x1b[" not in done.stderr  # no bar without a terminal


def test_shards_in_the_bucket_are_read_without_listing_it(
    s3_server, bucket: str, tmp_path: Path
) -> None:
    folder = index_folder(tmp_path / "idx", train=50, val=23, classes=3)
    pack_folder(folder, f"s3://{bucket}/idx", 64 << 10)
    since = s3_server.log_size()
    batches, tar_gets = {}, {}
    for stage in (True, False):
        started = s3_server.log_size()
        spec = DataSpec(
            source=ShardsSource(root=f"s3://{bucket}/idx", stage=stage),
            pipeline={"kind": "cifar", "pad": 0, "crop": 8, "flip": False,
                      "mean": [0, 0, 0], "std": [1, 1, 1]},
            threads=1,
        )  # fmt: skip
        layout = prepare_dataset(spec)
        seen = []
        for rank in range(2):
            loader = build_loader(spec, layout, "val", batch_size=4, shard_id=rank, num_shards=2)
            for images, labels in loader:
                indices = decode_indices(images)
                assert [int(v) for v in labels] == [i % 3 for i in indices]
                seen += indices
        assert sorted(seen) == list(range(23))
        train = build_loader(spec, layout, "train", batch_size=4, seed=1)
        batches[stage] = [decode_indices(images) for images, _ in train]
        requests = s3_server.requests(started)
        tar_gets[stage] = [r for r in requests if re.match(r"GET /\S*\.tar ", r)]
    assert batches[True] == batches[False]  # local copies read as the bucket would be
    copies = cache_folder(layout.manifest.digest)
    shards = [s.tar for split in ("train", "val") for s in layout.shards(split)]
    assert sorted(p.relative_to(copies).as_posix() for p in copies.rglob("*.tar")) == sorted(shards)
    # Staged, each shard is one request (it is smaller than a download chunk); straight from
    # the bucket, DALI asks for every image with a request of its own.
    assert len(tar_gets[True]) == len(shards)
    assert len(tar_gets[False]) >= 23 + len(batches[False]) * 4
    assert s3_server.listings(bucket, since) == []


def test_a_quickstart_on_shards_in_the_bucket_trains_to_its_accuracy_without_listing(
    s3_server, bucket: str, submit, workdir: Path
) -> None:
    uri = f"s3://{bucket}/digits-shards"
    pack_folder(digits_folder(), uri, 1 << 20)
    job = yaml.safe_load((JOBS / "quickstart.yaml").read_text())
    job["data"]["source"] = {"kind": "shards", "root": uri}
    (workdir / "job.yaml").write_text(yaml.safe_dump(job))
    since = s3_server.log_size()
    code, out, err = submit("job.yaml", "--json").wait(timeout=900)
    assert code == 0, err[-4000:]
    result = summary(out)
    assert s3_server.listings(bucket, since) == []  # the manifest, the indexes, the shards
    client = mlflow_client(workdir)
    run = client.get_run(result["mlflow_run_id"])
    # The quickstart's accuracy (99.2-100 % on the digits folder): the same data, packed.
    print(f"val top-1 error {run.data.metrics['val_top1_error_pct']:.2f}%")
    assert run.data.metrics["val_top1_error_pct"] <= 3.0, run.data.metrics
    assert run.data.tags["data"] == "digits-shards"
    manifest = json.loads(s3_server.read(bucket, f"digits-shards/{MANIFEST}"))
    inputs = {d.dataset.name: d.dataset for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"digits-shards/train", "digits-shards/val"}
    for split, images in (("train", 1437), ("val", 360)):
        dataset = inputs[f"digits-shards/{split}"]
        assert json.loads(dataset.source) == {"uri": uri}
        assert dataset.digest == manifest["splits"][split]["digest"][:12]
        assert json.loads(dataset.profile)["num_images"] == images
