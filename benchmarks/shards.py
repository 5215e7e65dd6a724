"""Packed shards in a bucket against an image folder and per-file objects, side by side in one run.

    .venv/bin/python benchmarks/shards.py [--images 512] [--starts 10000,100000] [--repeats 3]

Starts an S3-compatible server on loopback (`python -m moto.server`, as `storage.py` does),
killed with its process group at the end, and measures, through the loader's own readers
(`data/splits.py`, `data/shards/reading.py`):

  * DALI CPU read + JPEG decode (reader + `fn.decoders.image`, batch 32, 2 threads, one
    worker, shuffled) of the same JPEGs of 375x500: from a folder (`fn.readers.file`), from
    per-file objects in the bucket (`fn.readers.file`, `s3://`), and from shards packed into the
    bucket by `resnetctl data pack`, read as `data.source.kind: shards` reads them: staged
    (each shard copied whole into the node's cache, then `fn.readers.webdataset` on the copy;
    the default) and `stage: false` (DALI fetches every image with a ranged request). img/s is
    the best of `--repeats` epochs after a warm-up epoch; the first staged epoch, copy included,
    is timed apart with a cold cache.
  * `resnetctl data pack` of those JPEGs from the folder into the bucket, in one process
    (scan, read, decode every image, write the shards, upload): images per second.
  * Seconds to the first step of a run's data, cold caches, one worker: prepare the data set
    (image folder in the bucket: list it; shards: read the manifest), build the training
    loader (CIFAR pipeline), take its first batch (shards: copying the worker's shards
    included), for N small generated JPEGs (32x32, about 1 KB, 100 classes; N/10 more for
    validation), and the requests the server answered meanwhile (listings apart).

moto keeps objects in memory and answers a ranged GET by reading the whole object: its figures
measure the client side plus moto, not a real store (see docs/benchmarks.md). Prints one JSON
document.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from storage import start_moto, upload, write_jpegs  # noqa: E402 (a sibling script)

BUCKET = "bench"


def _requests(log: Path, since: int) -> list[str]:
    text = log.read_bytes()[since:].decode("utf-8", "replace")
    return re.findall(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+ /\S* HTTP/[0-9.]+)', text)


def _fresh_cache(scratch: Path) -> Path:
    """A new, empty cache folder for this process (what a cold node has)."""
    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=scratch))
    os.environ["RESNETCTL_CACHE"] = str(cache)
    return cache


# ---- read + decode -----------------------------------------------------------------------------


def _decode_epoch(reader, batch: int, threads: int, steps: int) -> None:
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=batch, num_threads=threads, device_id=None, prefetch_queue_depth=2)
    def pipe():
        jpegs, labels = reader()
        return fn.decoders.image(jpegs, device="cpu", output_type=types.RGB), labels

    p = pipe()
    p.build()
    for _ in range(steps):
        p.run()
    del p


def _split(layout, source, batch: int):
    from resnetctl.data.splits import split_reader

    return split_reader(
        layout, "train", shuffled=True, keep=layout.train_files, shard_id=0, num_shards=1,
        seed=0, batch_size=batch, source=source,
    )  # fmt: skip


def read_decode(scratch: Path, images: int, shard_size: int, args) -> dict:
    """img/s of reader + decode, folder vs per-file objects vs shards (staged, direct)."""
    from resnetctl.data import prepare_dataset
    from resnetctl.data.shards.pack import PackOptions, pack
    from resnetctl.spec.data import DataSpec

    folder = scratch / "jpegs"
    for split, count in (("train", images), ("val", 32)):
        write_jpegs(folder / split, count)
    upload(folder, BUCKET, "jpegs", threads=16)
    started = time.perf_counter()
    pack(PackOptions(str(folder), shard_bytes=shard_size), f"s3://{BUCKET}/jpeg-shards")
    packing = time.perf_counter() - started

    sources = {
        "folder": {"kind": "imagefolder", "root": str(folder)},
        "bucket_files": {"kind": "imagefolder", "root": f"s3://{BUCKET}/jpegs"},
        "bucket_shards_staged": {"kind": "shards", "root": f"s3://{BUCKET}/jpeg-shards"},
        "bucket_shards_direct": {
            "kind": "shards", "root": f"s3://{BUCKET}/jpeg-shards", "stage": False
        },
    }  # fmt: skip
    steps = images // args.batch
    # `data pack` in one process: scan, read, decode-check every image, write, upload.
    figures: dict = {"images": images, "shard_bytes": shard_size,
                     "pack_img_s": (images + 32) / packing}  # fmt: skip
    for name, source in sources.items():
        _fresh_cache(scratch)
        spec = DataSpec.model_validate({"source": source})
        layout = prepare_dataset(spec)
        split = _split(layout, spec.source, args.batch)
        started = time.perf_counter()
        _decode_epoch(split.reader(0, 1), args.batch, args.threads, steps)  # warm-up (staging)
        first = time.perf_counter() - started
        best = min(
            _timed(
                lambda e=e, s=split: _decode_epoch(
                    s.reader(e, e + 1), args.batch, args.threads, steps
                )
            )  # fmt: skip
            for e in range(1, args.repeats + 1)
        )
        figures[name] = {"img_s": steps * args.batch / best, "first_epoch_s": first}
    base = figures["folder"]["img_s"]
    for name in sources:
        figures[name]["vs_folder"] = figures[name]["img_s"] / base
    figures["shards_staged_first_epoch_img_s"] = (
        steps * args.batch / figures["bucket_shards_staged"]["first_epoch_s"]
    )
    return figures


def _timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


# ---- seconds to the first step -------------------------------------------------------------------


def write_small(folder: Path, train: int, classes: int = 100) -> None:
    """`train` 32x32 JPEGs (and a tenth as many for validation) in `classes` class folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (classes, 32, 32, 3), dtype=np.uint8)

    def one(item: tuple[str, int]) -> None:
        split, i = item
        path = folder / split / f"c{i % classes:03d}" / f"{i:07d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.roll(base[i % classes], i % 7, axis=1)).save(path, quality=85)

    items = [("train", i) for i in range(train)] + [("val", i) for i in range(train // 10)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, items))


def first_step(scratch: Path, log: Path, count: int, batch: int) -> dict:
    """Seconds from nothing (cold cache) to the first training batch, image folder in the
    bucket against its packed shards in the bucket."""
    from resnetctl.data import build_loader, prepare_dataset
    from resnetctl.data.shards.pack import PackOptions, pack
    from resnetctl.spec.data import DataSpec

    folder = scratch / f"small-{count}"
    write_small(folder, count)
    upload(folder, BUCKET, f"small-{count}", threads=16)
    packed = pack(PackOptions(str(folder)), f"s3://{BUCKET}/small-{count}-shards")
    shutil.rmtree(folder)
    train = packed.manifest.splits["train"]
    out: dict = {"images": count, "train_shards": len(train.shards),
                 "train_shard_bytes": sum(s.bytes for s in train.shards)}  # fmt: skip
    pipeline = {"kind": "cifar", "pad": 4, "crop": 32}
    for name, source in (
        ("imagefolder", {"kind": "imagefolder", "root": f"s3://{BUCKET}/small-{count}"}),
        ("shards", {"kind": "shards", "root": f"s3://{BUCKET}/small-{count}-shards"}),
    ):
        _fresh_cache(scratch)
        spec = DataSpec.model_validate({"source": source, "pipeline": pipeline, "threads": 2})
        since = log.stat().st_size
        started = time.perf_counter()
        layout = prepare_dataset(spec)
        prepared = time.perf_counter() - started
        loader = build_loader(spec, layout, "train", batch_size=batch, seed=0)
        next(iter(loader))
        total = time.perf_counter() - started
        requests = _requests(log, since)
        listings = [r for r in requests if re.match(rf"GET /{BUCKET}/?(\?\S*)? ", r)]
        out[name] = {
            "first_step_s": total,
            "prepare_s": prepared,
            "requests": len(requests),
            "listings": len(listings),
        }
    shards, folder_s = out["shards"]["first_step_s"], out["imagefolder"]["first_step_s"]
    out["shards_vs_imagefolder"] = shards / folder_s
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512, help="JPEGs (375x500) to decode")
    parser.add_argument("--shard-size", default="64MiB", help="shard size of those")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--starts", default="10000,100000", help="images for first-step times")
    args = parser.parse_args()

    import boto3

    from resnetctl.units import parse_bytes

    scratch = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    saved_cache = os.environ.get("RESNETCTL_CACHE")
    log = scratch / "moto.log"
    process, endpoint = start_moto(log)
    report: dict = {"endpoint": endpoint, "load_average_at_start": os.getloadavg()}
    try:
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        if args.images:
            report["read_decode"] = read_decode(
                scratch, args.images, parse_bytes(args.shard_size), args
            )
        report["first_step"] = [
            first_step(scratch, log, int(n), args.batch) for n in args.starts.split(",") if n
        ]
        report["load_average_at_end"] = os.getloadavg()
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        shutil.rmtree(scratch, ignore_errors=True)
        if saved_cache is None:
            os.environ.pop("RESNETCTL_CACHE", None)
        else:
            os.environ["RESNETCTL_CACHE"] = saved_cache
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
