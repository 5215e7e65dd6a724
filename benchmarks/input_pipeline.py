"""Input-pipeline throughput: resnetctl's DALI CPU loader against torchvision, same files, one run.

    .venv/bin/python benchmarks/input_pipeline.py [--images 384] [--threads 2] [--batch 32]

Generates ImageNet-like JPEGs (375x500) into a temporary folder, then measures images/s of
  * the DALI CPU training loader (the paper's augmentation: shorter side ~ U[256, 480], random
    224 crop, flip, brightness/contrast/saturation, PCA lighting, normalise), as the training
    loop uses it (tensors copied into torch);
  * the same augmentation as textbook resize-then-crop in DALI (what the region decode replaces);
  * Inception-style random-resized-crop in DALI;
  * torchvision ImageFolder + DataLoader with PIL doing the paper's augmentation, with as many
    worker processes as DALI has threads;
  * the loader's first stages alone: decode of the crop's region, and that plus the resize;
  * DALI JPEG decode alone, whole images (the ceiling the issue compares against).
Each figure: the fastest of --repeats timed epochs (img/s) and the median CPU time per image
(this process and its workers), after one warm-up epoch; an epoch lists every file --passes times.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from resnetctl.data import build_loader, prepare_dataset
from resnetctl.data.pipelines import PCA_EIGVAL, PCA_EIGVEC, build_pipeline, decode_region
from resnetctl.data.readers import file_reader
from resnetctl.spec.data import ColorAugment, DataSpec, ImageNetPipeline, SyntheticSource

Figure = tuple[float, float]  # (images/s wall clock, CPU milliseconds per image)


def _cpu_seconds() -> float:
    """CPU time of this process and its live children (torchvision's workers)."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _time_epochs(run_epoch: Callable[[], int], repeats: int) -> Figure:
    """Best images/s and median CPU ms/image over `repeats` epochs, after a warm-up epoch.

    On a shared machine other people's load only ever slows an epoch down, so the fastest epoch
    is the least disturbed one; CPU time per image moves less, and is reported beside it.
    """
    run_epoch()
    rates, cpu_ms = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), _cpu_seconds()
        count = run_epoch()
        rates.append(count / (time.perf_counter() - start))
        cpu_ms.append(1000 * (_cpu_seconds() - cpu) / count)
    return max(rates), statistics.median(cpu_ms)


def _count(batches: Iterable) -> int:
    return sum(len(batch[1]) for batch in batches)


def dali_loader(spec: DataSpec, layout, batch: int, repeats: int) -> Figure:
    """The loader the training loop uses."""
    loader = build_loader(spec, layout, "train", batch_size=batch, seed=0)
    return _time_epochs(lambda: _count(loader), repeats)


def dali_pipeline(cfg, layout, batch: int, threads: int, repeats: int, **options) -> Figure:
    """A training pipeline variant driven directly (outputs left in DALI's buffers)."""
    steps = layout.train_files // batch

    def epoch() -> int:
        pipe = build_pipeline(
            cfg,
            "train",
            reader=file_reader(
                str(layout.train_dir), str(layout.train_list), batch_size=batch, shuffle=True
            ),
            batch_size=batch,
            seed=0,
            threads=threads,
            prefetch=2,
            device="cpu",
            device_id=None,
            **options,
        )
        for _ in range(steps):
            pipe.run()
        del pipe
        return steps * batch

    return _time_epochs(epoch, repeats)


def dali_decode_only(layout, batch: int, threads: int, repeats: int) -> Figure:
    """Reader + whole-image JPEG decode on the CPU, nothing else."""
    from nvidia.dali import fn, types

    def decode(jpegs):
        return fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)

    return _dali_stage(decode, layout, batch, threads, repeats)


def dali_region(
    cfg: ImageNetPipeline, layout, batch: int, threads: int, repeats: int, *, resize: bool
) -> Figure:
    """The loader's first stages alone: decode of the crop's region, optionally its resize."""
    from nvidia.dali import fn

    def region(jpegs):
        shorter = fn.random.uniform(range=[float(v) for v in cfg.scale_range])
        pos = fn.random.uniform(range=(0.0, 1.0), shape=2)
        return decode_region(jpegs, "cpu", shorter, cfg.crop, pos[0], pos[1], resize=resize)[0]

    return _dali_stage(region, layout, batch, threads, repeats)


def _dali_stage(stage: Callable, layout, batch: int, threads: int, repeats: int) -> Figure:
    """Reader + `stage(jpegs)` on the CPU, outputs left in DALI's buffers."""
    from nvidia.dali import fn, pipeline_def

    @pipeline_def
    def pipeline():
        jpegs, labels = fn.readers.file(
            file_root=str(layout.train_dir),
            file_list=str(layout.train_list),
            name="Reader",
            random_shuffle=True,
            seed=0,
        )
        return stage(jpegs), labels

    steps = layout.train_files // batch

    def epoch() -> int:
        pipe = pipeline(batch_size=batch, num_threads=threads, device_id=None, seed=0)
        pipe.build()
        for _ in range(steps):
            pipe.run()
        del pipe
        return steps * batch

    return _time_epochs(epoch, repeats)


class _ShorterSide:
    """Resize the shorter side to a random integer in [low, high] (the paper's scale jitter)."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def __call__(self, img):
        from torchvision.transforms import functional as F

        return F.resize(img, random.randint(self.low, self.high))


class _Lighting:
    """AlexNet's PCA lighting on a [0, 1] tensor."""

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma
        self.eigval = torch.tensor(PCA_EIGVAL)
        self.eigvec = torch.tensor(PCA_EIGVEC)

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        alpha = torch.randn(3) * self.sigma
        return tensor + (self.eigvec @ (alpha * self.eigval)).view(3, 1, 1)


def torchvision_loader(
    layout, cfg: ImageNetPipeline, batch: int, workers: int, repeats: int, passes: int
) -> Figure:
    """ImageFolder + DataLoader, PIL doing the same augmentation in `workers` processes."""
    from torchvision import datasets, transforms

    mean = [m / 255 for m in cfg.mean]
    std = [s / 255 for s in cfg.std]
    transform = transforms.Compose(
        [
            _ShorterSide(*cfg.scale_range),
            transforms.RandomCrop(cfg.crop),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(cfg.color.brightness, cfg.color.contrast, cfg.color.saturation),
            transforms.ToTensor(),
            _Lighting(cfg.color.pca_lighting),
            transforms.Normalize(mean, std),
        ]
    )
    folder = datasets.ImageFolder(str(layout.train_dir), transform=transform)
    dataset = torch.utils.data.ConcatDataset([folder] * passes)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=True,
        prefetch_factor=2,
    )
    # The persistent workers exit when the loader is collected on return.
    return _time_epochs(lambda: _count(loader), repeats)


TORCHVISION = "torchvision ImageFolder+DataLoader (PIL)"
DALI = "DALI CPU loader, paper augmentation"
REFERENCE = "DALI CPU, resize-then-crop (reference)"
DECODE = "DALI CPU decode only (whole image)"


def main(argv: list[str] | None = None) -> int:
    """Run every measurement and print the figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=384, help="JPEG files to generate")
    parser.add_argument(
        "--passes",
        type=int,
        default=3,
        help="times each file appears in an epoch (long epochs make the "
        "per-epoch pipeline start-up as rare as on ImageNet)",
    )
    parser.add_argument("--threads", type=int, default=2, help="DALI threads = torch workers")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per measurement")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    classes = 8
    with tempfile.TemporaryDirectory(prefix="resnetctl-bench-") as tmp:
        source = SyntheticSource(
            num_classes=classes,
            train_per_class=max(1, args.images // classes),
            val_per_class=1,
            image_size=(375, 500),
            cache_dir=Path(tmp),
        )
        cfg = ImageNetPipeline()
        spec = DataSpec(source=source, pipeline=cfg, threads=args.threads, prefetch=2)
        start = time.perf_counter()
        files = prepare_dataset(spec)
        sizes = [p.stat().st_size for p in files.train_dir.rglob("*.jpg")]
        long_list = Path(tmp) / "train-long.txt"
        long_list.write_text(files.train_list.read_text() * args.passes)
        layout = dataclasses.replace(
            files, train_list=long_list, train_files=files.train_files * args.passes
        )
        print(
            f"{files.train_files} JPEGs of 375x500 (epochs of {layout.train_files}), "
            f"mean {np.mean(sizes) / 1024:.0f} KiB, "
            f"written in {time.perf_counter() - start:.1f} s; batch {args.batch}, "
            f"{args.threads} threads/workers, {os.cpu_count()} CPUs, torch {torch.__version__}",
            flush=True,
        )

        results: dict[str, Figure] = {}
        idle = f"img/s on {args.threads} idle cores"
        print(f"  {'':<44} {'img/s':>8} {'CPU ms/img':>11} {idle:>20}")

        def record(name: str, figure: Figure) -> None:
            results[name] = figure
            rate, cpu_ms = figure
            print(
                f"  {name:<44} {rate:8.1f} {cpu_ms:11.2f} {args.threads * 1000 / cpu_ms:20.0f}"
                f"   (load {os.getloadavg()[0]:.1f})",
                flush=True,
            )

        # torchvision forks its workers first, before any DALI thread pool exists.
        record(
            TORCHVISION,
            torchvision_loader(layout, cfg, args.batch, args.threads, args.repeats, args.passes),
        )
        record(DALI, dali_loader(spec, layout, args.batch, args.repeats))
        record(
            REFERENCE,
            dali_pipeline(cfg, layout, args.batch, args.threads, args.repeats, region_decode=False),
        )
        rrc = cfg.model_copy(update={"train_crop": "random_resized_crop"})
        record(
            "DALI CPU, random-resized-crop",
            dali_pipeline(rrc, layout, args.batch, args.threads, args.repeats),
        )
        plain = cfg.model_copy(
            update={"color": ColorAugment(brightness=0, contrast=0, saturation=0, pca_lighting=0)}
        )
        record(
            "DALI CPU loader, paper crop+flip, no colour",
            dali_loader(
                spec.model_copy(update={"pipeline": plain}), layout, args.batch, args.repeats
            ),
        )
        # Where the loader's CPU goes: its stages one by one (the row above adds flip and
        # normalisation, the loader's row colour and the copy into torch).
        record(
            "DALI CPU, region decode + resize to 224",
            dali_region(cfg, layout, args.batch, args.threads, args.repeats, resize=True),
        )
        record(
            "DALI CPU, region decode only",
            dali_region(cfg, layout, args.batch, args.threads, args.repeats, resize=False),
        )
        record(DECODE, dali_decode_only(layout, args.batch, args.threads, args.repeats))

    for label, index in (("wall clock", 0), ("CPU time", 1)):

        def ratio(a: str, b: str, index: int = index) -> float:
            x, y = results[a][index], results[b][index]
            return x / y if index == 0 else y / x  # both as "a is N times as fast as b"

        vs_tv, vs_decode = ratio(DALI, TORCHVISION), ratio(DALI, DECODE)
        print(
            f"by {label}: DALI / torchvision {vs_tv:.2f}x (target >= 2x: "
            f"{'met' if vs_tv >= 2 else 'NOT met'}); DALI / decode-only {vs_decode:.0%} "
            f"(target >= 80%: {'met' if vs_decode >= 0.8 else 'NOT met'}); region decode / "
            f"resize-then-crop {ratio(DALI, REFERENCE):.2f}x"
        )
    if args.json:
        payload = {
            name: {"images_per_s": r, "cpu_ms_per_image": c} for name, (r, c) in results.items()
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
