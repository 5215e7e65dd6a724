"""`resnetctl eval` images/s per protocol with 1 and 2 workers, and each protocol's cost per image.

    .venv/bin/python benchmarks/eval_protocols.py [--images 48] [--crop 112] [--model resnet18]

In a temporary folder: synthetic JPEGs with ImageNet's mix of sizes (mostly 500x375 and
375x500, some 500x333, 333x500, 500x500 and odd sizes), a checkpoint of an untrained `--model`
with the ImageNet pipeline at test crop `--crop` (the paper's geometry scaled by crop / 224:
val_resize 128 and multi-scale sides 112/128/192/240/320 for 112; `--crop 224` is the paper's
own, four times the compute), then `resnetctl eval CHECKPOINT --json` as a user runs it on the
embedded Ray, once per worker layout:

- 1 worker of 1 CPU, 1 worker of 2 CPUs, 2 workers of 1 CPU (this machine has 2 cores).

Each row: images/s of each protocol (wall clock of the protocol, every worker, start-up
excluded) and the seconds to start Ray and the workers. Then, from the 2-worker row, the cost
per image of each protocol relative to `center`, beside the ratio of pixels it forwards (the
cost if the network's time were proportional to pixels): multi-scale forwards the whole image
at five shorter sides and its mirror image. Last, the multi-scale batching in this process
(2 threads, one shard): buckets of equal shape across DALI batches against forwarding each DALI
batch's shapes apart (the first version of the protocol), same images, same results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: (height, width, share): ImageNet validation's common sizes, roughly in its proportions.
SIZES = ((375, 500, 0.45), (500, 375, 0.15), (333, 500, 0.15), (500, 333, 0.05), (500, 500, 0.05))
CLASSES = 8
LAYOUTS = ((1, 1.0), (1, 2.0), (2, 1.0))  # (workers, CPUs per worker)


def write_images(root: Path, count: int, seed: int = 0) -> list[tuple[int, int]]:
    """`root/val/class_*/NNN.jpg` (and a one-image train split the layout needs); returns the
    (height, width) of each validation image."""
    from PIL import Image

    from resnetctl.data.synthetic import class_name, synthetic_image

    rng = np.random.default_rng(seed)
    shares = np.array([s for _, _, s in SIZES] + [1.0 - sum(s for _, _, s in SIZES)])
    shapes = []
    for i in range(count):
        pick = rng.choice(len(shares), p=shares / shares.sum())
        if pick < len(SIZES):
            height, width = SIZES[pick][:2]
        else:  # the odd sizes of the rest
            height, width = int(rng.integers(200, 500)), int(rng.integers(200, 500))
        label = i % CLASSES
        for split in ("val", "train") if i < CLASSES else ("val",):
            folder = root / split / class_name(label)
            folder.mkdir(parents=True, exist_ok=True)
            pixels = synthetic_image(rng, label, CLASSES, height, width)
            Image.fromarray(pixels).save(folder / f"{i:04d}.jpg", quality=90)
        shapes.append((height, width))
    return shapes


def write_checkpoint(folder: Path, data: Path, model: str, crop: int) -> Path:
    """An untrained network's checkpoint with its spec, as a run writes it."""
    import torch

    from resnetctl.models import create_model
    from resnetctl.spec import JobSpec
    from resnetctl.train.checkpoint import save_checkpoint

    resize = round(256 * crop / 224)
    spec = JobSpec.model_validate(
        {
            "name": "eval-bench",
            "model": {"name": model},
            "data": {
                "source": {"kind": "imagefolder", "root": str(data)},
                "pipeline": {
                    "kind": "imagenet",
                    "crop": crop,
                    "scale_range": [resize, 2 * resize],
                    "val_resize": resize,
                    "val_crop": crop,
                },
                "threads": 1,
            },
            "train": {"epochs": 1, "batch_size_per_worker": 32},
        }
    )
    torch.manual_seed(0)
    network = create_model(model, num_classes=CLASSES)
    meta = {"epoch": 1, "model": model, "spec": spec.model_dump(mode="json"), "metrics": {}}
    return save_checkpoint(folder, {"model": network.state_dict()}, meta)


def run_eval(checkpoint: Path, work: Path, workers: int, cpus: float, batch: int) -> dict:
    """`resnetctl eval` in a process of its own, as a user runs it; its JSON."""
    command = [
        sys.executable,
        "-m",
        "resnetctl",
        "eval",
        str(checkpoint),
        "--workers",
        str(workers),
        "--cpus-per-worker",
        f"{cpus:g}",
        "--batch-size",
        str(batch),
        "--no-log",
        "--json",
    ]
    env = {**os.environ, "RAY_ADDRESS": ""}
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"eval failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def pixel_ratios(shapes: list[tuple[int, int]], crop: int, mirrors: bool) -> dict[str, float]:
    """Pixels each protocol forwards per image, relative to center's crop x crop."""
    from resnetctl.inference.evaluate import multi_scale_sizes
    from resnetctl.spec.data import ImageNetPipeline

    cfg = ImageNetPipeline(crop=crop, val_crop=crop, scale_range=(crop, 2 * crop))
    flips = 2 if mirrors else 1
    whole = [
        sum(s * round(s * max(h, w) / min(h, w)) for s in multi_scale_sizes(cfg)) * flips
        for h, w in shapes
    ]
    return {"center": 1.0, "ten_crop": 10.0, "multi_scale": float(np.mean(whole)) / crop**2}


def batching(checkpoint: Path, batch: int) -> dict[str, dict[str, float]]:
    """Multi-scale in this process (2 threads): buckets across DALI batches against each
    batch's shapes forwarded apart (`pending_bytes=0`); seconds, forwards, agreement."""
    import torch

    from resnetctl.inference.evaluate import eval_layout, multi_scale_sizes
    from resnetctl.inference.multiscale import PENDING_BYTES, multi_scale_batches
    from resnetctl.inference.preprocess import as_imagenet
    from resnetctl.inference.source import load_model

    torch.set_num_threads(2)
    loaded = load_model(str(checkpoint))
    spec = loaded.spec
    assert spec is not None
    layout = eval_layout(spec, None)
    sizes = multi_scale_sizes(spec.pipeline)
    cfg = as_imagenet(spec.pipeline, sizes[0])
    rows: dict[str, dict[str, float]] = {}
    scores: dict[str, torch.Tensor] = {}
    for name, pending in (("per DALI batch", 0), ("buckets across batches", PENDING_BYTES)):
        forwards: list[int] = []

        def model(images: torch.Tensor, seen: list[int] = forwards) -> torch.Tensor:
            seen.append(images.shape[0])
            return loaded.model(images)

        began, cpu = time.perf_counter(), time.process_time()
        found = {}
        with torch.no_grad():
            for keys, rows_, _ in multi_scale_batches(
                model,
                cfg,
                layout,
                batch_size=batch,
                scales=sizes,
                mirrors=spec.pipeline.flip,
                threads=1,
                pending_bytes=pending,
            ):
                found.update(zip(keys.tolist(), rows_, strict=True))
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        scores[name] = torch.stack([found[k] for k in sorted(found)])
        rows[name] = {
            "seconds": seconds,
            "images_per_second": len(found) / seconds,
            "cpu_ms_per_image": 1000 * cpu / len(found),
            "forwards": len(forwards),
            "mean_forward_batch": float(np.mean(forwards)),
        }
    a, b = scores.values()
    rows["buckets across batches"]["max_score_difference"] = float((a - b).abs().max())
    return rows


def main(argv: list[str] | None = None) -> int:
    """Write the data and the checkpoint, run eval in every layout, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON too.")
    args = parser.parse_args(argv)

    report: dict = {"load_average_at_start": os.getloadavg(), "args": vars(args), "layouts": []}
    with tempfile.TemporaryDirectory(prefix="resnetctl-evalbench-") as tmp:
        work = Path(tmp)
        os.environ["RESNETCTL_CACHE"] = str(work / "cache")  # the folder scan's lists, removed
        shapes = write_images(work / "data", args.images)
        checkpoint = write_checkpoint(work / "ckpt", work / "data", args.model, args.crop)
        for workers, cpus in LAYOUTS:
            payload = run_eval(checkpoint, work, workers, cpus, args.batch_size)
            report["layouts"].append(
                {
                    "workers": workers,
                    "cpus_per_worker": cpus,
                    "startup_seconds": payload["startup_seconds"],
                    "images_per_second": {
                        r["protocol"]: r["images_per_second"] for r in payload["results"]
                    },
                    "cpu_ms_per_image": {
                        r["protocol"]: 1000 * r["cpu_seconds"] / r["images"]
                        for r in payload["results"]
                    },
                    "views": {r["protocol"]: r["views"] for r in payload["results"]},
                }
            )
        report["pixels_per_image_vs_center"] = pixel_ratios(shapes, args.crop, mirrors=True)
        report["multi_scale_batching"] = batching(checkpoint, args.batch_size)
    report["load_average_at_end"] = os.getloadavg()
    _print(report, args)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def _print(report: dict, args: argparse.Namespace) -> None:
    protocols = ("center", "ten_crop", "multi_scale")
    print(
        f"{args.images} images, {args.model}, test crop {args.crop}; load average "
        f"{report['load_average_at_start'][0]:.1f} at start, "
        f"{report['load_average_at_end'][0]:.1f} at end"
    )
    header = f"{'workers x CPUs':<16}" + "".join(f"{p:>13}" for p in protocols)
    print("\nimages/s, wall clock (start-up excluded)")
    print(header + "   start-up s")
    for row in report["layouts"]:
        name = f"{row['workers']} x {row['cpus_per_worker']:g}"
        rates = "".join(f"{row['images_per_second'][p]:>13.2f}" for p in protocols)
        print(f"{name:<16}{rates}{row['startup_seconds']:>14.1f}")
    print("\nCPU ms per image, all workers (load-independent)")
    print(header)
    for row in report["layouts"]:
        name = f"{row['workers']} x {row['cpus_per_worker']:g}"
        print(f"{name:<16}" + "".join(f"{row['cpu_ms_per_image'][p]:>13.1f}" for p in protocols))
    first, *_, last = report["layouts"]
    ratios = ", ".join(
        f"{p} {last['images_per_second'][p] / first['images_per_second'][p]:.2f}x"
        for p in protocols
    )
    print(f"\n2 workers / 1 worker of 1 CPU, wall clock: {ratios}")
    print("\ncost per image relative to center (CPU time, 2 workers), beside the pixels forwarded")
    centre = last["cpu_ms_per_image"]["center"]
    pixels = report["pixels_per_image_vs_center"]
    for p in protocols:
        ms = last["cpu_ms_per_image"][p]
        print(
            f"  {p:<12} {ms:8.1f} CPU ms/image {ms / centre:6.1f}x center  pixels "
            f"{pixels[p]:5.1f}x  per pixel {ms / centre / pixels[p]:.2f}x center's  "
            f"({last['views'][p]})"
        )
    print("\nmulti-scale batching, this process, 2 threads, one shard")
    for name, row in report["multi_scale_batching"].items():
        extra = (
            f"  max score difference {row['max_score_difference']:.1e}"
            if "max_score_difference" in row
            else ""
        )
        print(
            f"  {name:<24} {row['images_per_second']:6.2f} img/s {row['cpu_ms_per_image']:7.1f} "
            f"CPU ms/image  {row['forwards']:4d} forwards of {row['mean_forward_batch']:5.1f} "
            f"views{extra}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
