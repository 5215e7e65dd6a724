"""Run storage and data in a bucket against local disk, side by side in one run.

    .venv/bin/python benchmarks/storage.py [--images 256] [--files 10000,100000] [--repeats 3]

Starts an S3-compatible server on loopback (`python -m moto.server`, from the dev extras) on a
free port, killed with its process group at the end, and measures:

  * one ResNet-50 checkpoint (weights + SGD momentum, as `train/checkpoint.py` writes it): the
    time to write it into run storage (save to a temporary folder, then copy it in as Ray Train
    does) and to read it back (download + `torch.load(weights_only=True)`), local folder vs
    bucket; and what share of an ImageNet epoch that is at a given training speed;
  * DALI read + JPEG decode (CPU, `fn.readers.file` + `fn.decoders.image`) of the same JPEGs from
    a folder and from the bucket (`file_root="s3://..."`), img/s and the ratio;
  * listing and labelling a split of N files (`layout_for_folder`'s scan of a folder: walk plus
    the cheap per-file header checks; a bucket: one recursive listing), extrapolated linearly
    to ImageNet's 1,281,167 training images.

The loopback server is moto (Python, in-memory): its figures measure the client and moto, not
the latency or bandwidth of a real object store. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

IMAGENET_TRAIN = 1_281_167


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto(log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """moto on a free loopback port, in a session of its own; the AWS variables point at it.
    With `log`, its output (a line per request) goes there."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(log or os.devnull, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(endpoint, timeout=2)  # noqa: S310 (loopback only)
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            time.sleep(0.3)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        raise SystemExit(f"moto did not answer on {endpoint}")
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    return process, endpoint


def _best(fn, repeats: int) -> float:
    """Fastest of `repeats` runs in seconds (other people's load only ever slows a run)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ---- checkpoints -------------------------------------------------------------------------------


def resnet50_state() -> dict:
    import torch

    from resnetctl.models import create_model

    model = create_model("resnet50", num_classes=1000)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    optimizer.step()  # creates the momentum buffers
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict()}


def checkpoint_round_trip(root, state: dict, repeats: int) -> dict[str, float]:
    """Seconds to write one checkpoint into run storage `root` and to read it back."""
    from pyarrow import fs as pafs

    from resnetctl.storage import load_checkpoint
    from resnetctl.train.checkpoint import save_checkpoint

    target = root / "bench-run" / "epoch_0001"

    def write() -> None:
        with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp:
            save_checkpoint(Path(tmp), state, {"epoch": 1})
            if target.is_local:  # a bucket has no folders to create
                target.mkdir()
            pafs.copy_files(
                tmp,
                target.path,
                source_filesystem=pafs.LocalFileSystem(),
                destination_filesystem=target.fs,
            )

    def read() -> None:
        loaded, meta = load_checkpoint(target)
        assert meta["epoch"] == 1 and "model" in loaded

    seconds_write = _best(write, repeats)
    seconds_read = _best(read, repeats)
    size = sum(
        info.size
        for info in target.fs.get_file_info(pafs.FileSelector(target.path, recursive=True))
    )
    return {"write_s": seconds_write, "read_s": seconds_read, "bytes": size}


# ---- DALI read + decode ------------------------------------------------------------------------


def write_jpegs(folder: Path, count: int, classes: int = 4) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (47, 63, 3), dtype=np.uint8)
    for i in range(count):
        pixels = np.kron(np.roll(base, i, axis=1), np.ones((8, 8, 1), np.uint8))[:375, :500]
        noise = rng.integers(0, 24, pixels.shape, dtype=np.uint8)
        path = folder / f"c{i % classes}" / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels + noise).save(path, quality=90)


def upload(folder: Path, bucket: str, prefix: str, threads: int = 8) -> None:
    import boto3

    client = boto3.client("s3")
    files = [p for p in folder.rglob("*") if p.is_file()]

    def put(path: Path) -> None:
        key = f"{prefix}/{path.relative_to(folder).as_posix()}"
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, files))


def dali_decode(file_root: str, batch: int, threads: int, repeats: int, count: int) -> float:
    """img/s of reader + CPU JPEG decode over every file under `file_root` (best epoch)."""
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=batch, num_threads=threads, device_id=None, prefetch_queue_depth=2)
    def pipe():
        jpegs, labels = fn.readers.file(file_root=file_root, name="reader")
        return fn.decoders.image(jpegs, device="cpu", output_type=types.RGB), labels

    steps = count // batch

    def epoch() -> None:
        p = pipe()
        p.build()
        for _ in range(steps):
            p.run()
        del p

    epoch()  # warm-up: page cache, connections
    return steps * batch / _best(epoch, repeats)


# ---- listing -----------------------------------------------------------------------------------


def tiny_jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(out, format="JPEG")
    return out.getvalue()


def listing(count: int, bucket: str, scratch: Path, classes: int = 1000) -> dict[str, float]:
    """Seconds to list and label a split of `count` files: folder scan vs bucket listing."""
    from resnetctl.data.imagefolder import scan_split
    from resnetctl.data.objectstore import scan_bucket_split
    from resnetctl.storage import StoragePath

    data = tiny_jpeg()
    folder = scratch / f"split-{count}"
    for i in range(count):
        path = folder / f"n{i % classes:08d}" / f"{i:07d}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    upload(folder, bucket, f"split-{count}", threads=16)
    start = time.perf_counter()
    local = scan_split(folder, cache=None, full_decode=False)
    local_s = time.perf_counter() - start
    start = time.perf_counter()
    remote = scan_bucket_split(StoragePath.of(f"s3://{bucket}/split-{count}"), cache=None)
    remote_s = time.perf_counter() - start
    assert len(local.files) == len(remote.files) == count and local.classes == remote.classes
    shutil.rmtree(folder)
    return {
        "files": count,
        "folder_s": local_s,
        "bucket_s": remote_s,
        "folder_imagenet_s": local_s * IMAGENET_TRAIN / count,
        "bucket_imagenet_s": remote_s * IMAGENET_TRAIN / count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256, help="JPEGs (375x500) for DALI")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--files", default="10000,100000", help="split sizes to list")
    parser.add_argument(
        "--epoch-img-s",
        type=float,
        default=2000.0,
        help="training speed for the share of an epoch (img/s; 2000 ~ one 8-GPU node)",
    )
    args = parser.parse_args()

    import boto3

    from resnetctl.storage import StoragePath

    process, endpoint = start_moto()
    scratch = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    report: dict = {"endpoint": endpoint, "load_average_at_start": os.getloadavg()[0]}
    try:
        bucket = "bench"
        boto3.client("s3").create_bucket(Bucket=bucket)

        state = resnet50_state()
        epoch_s = IMAGENET_TRAIN / args.epoch_img_s
        checkpoints = {}
        for name, root in (
            ("local", StoragePath.of(scratch / "runs")),
            ("bucket", StoragePath.of(f"s3://{bucket}/runs")),
        ):
            figures = checkpoint_round_trip(root, state, args.repeats)
            figures["share_of_epoch_write"] = figures["write_s"] / epoch_s
            checkpoints[name] = figures
        checkpoints["bucket_vs_local_write"] = (
            checkpoints["bucket"]["write_s"] / checkpoints["local"]["write_s"]
        )
        checkpoints["bucket_vs_local_read"] = (
            checkpoints["bucket"]["read_s"] / checkpoints["local"]["read_s"]
        )
        checkpoints["epoch_s_at"] = {"img_s": args.epoch_img_s, "seconds": epoch_s}
        report["resnet50_checkpoint"] = checkpoints

        if args.images:
            images = scratch / "jpegs"
            write_jpegs(images, args.images)
            upload(images, bucket, "jpegs")
            disk = dali_decode(str(images), args.batch, args.threads, args.repeats, args.images)
            s3 = dali_decode(
                f"s3://{bucket}/jpegs", args.batch, args.threads, args.repeats, args.images
            )
            report["dali_read_decode"] = {
                "images": args.images,
                "disk_img_s": disk,
                "bucket_img_s": s3,
                "bucket_vs_disk": s3 / disk,
            }

        report["listing"] = [
            listing(int(n), bucket, scratch) for n in args.files.split(",") if int(n or 0)
        ]
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
