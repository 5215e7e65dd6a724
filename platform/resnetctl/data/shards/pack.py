"""`resnetctl data pack`: an image folder into WebDataset tar shards, DALI indexes, a manifest.

Layout of the destination (a folder or a bucket prefix):

    DST/manifest.json                 written last: the data set exists once it does
    DST/train/000000.tar, .idx ...    the shards, numbered per split
    DST/val/000000.tar, .idx ...
    DST/.pack/plan.json.gz            while packing: the plan (`plan.py`)
    DST/.pack/done/train-000000.json  while packing: one record per finished shard

A shard task reads its images (several at a time), decodes each one to leave out the corrupt,
writes the tar and then its index, and records itself done; the manifest is assembled from the
records once every shard has one, and `.pack/` is removed. Interrupted, a pack is resumed by the
same command: the plan is read back and only shards without a record are written, so finished
shards are not touched. Tasks run one after another in this process, or as Ray tasks on a
cluster (`pack(..., runner=ray_runner)`), one per shard.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnetctl.data.imagecheck import check_image_bytes
from resnetctl.data.imagefolder import DataError
from resnetctl.data.shards.manifest import (
    MANIFEST,
    SPLITS,
    Manifest,
    ShardEntry,
    SplitEntry,
    data_set_digest,
    read_manifest,
    split_digest,
)
from resnetctl.data.shards.plan import PackOptions, PackPlan, PlannedShard, make_plan
from resnetctl.data.shards.writer import Sample, write_shard
from resnetctl.storage import StorageError, StoragePath

WORK = ".pack"
PLAN = f"{WORK}/plan.json.gz"
DONE = f"{WORK}/done"
#: Images a shard task reads at once (object stores answer each with a request's latency).
READ_THREADS = 8

#: A shard task's arguments: (source, split folder, shard, label digits, classes, destination).
Task = tuple[str, str, PlannedShard, int, int, str]
#: Runs tasks, calling back with each finished shard's record, in any order.
Runner = Callable[[Sequence[Task], Callable[[dict[str, Any]], None]], None]


# -- one shard ------------------------------------------------------------------------------


def _read(source: StoragePath, relative: str) -> bytes | str:
    """The file's bytes, or why it could not be read."""
    try:
        return (source / relative).read_bytes()
    except (OSError, StorageError) as exc:
        return f"unreadable ({exc})"


def _checked(source: StoragePath, relative: str) -> tuple[bytes | None, str | None, Any]:
    data = _read(source, relative)
    if isinstance(data, str):
        return None, data, None
    check = check_image_bytes(data)
    return (data, None, check.size) if check.problem is None else (None, check.problem, None)


def pack_shard(
    source: str,
    split_dir: str,
    shard: PlannedShard,
    label_digits: int,
    num_classes: int,
    destination: str,
) -> dict[str, Any]:
    """Write one planned shard (tar, then index) and its record; returns the record."""
    src = StoragePath.of(source) / split_dir
    dst = StoragePath.of(destination)
    per_class = [0] * num_classes
    skipped: list[list[str]] = []
    sizes: list[tuple[int, int]] = []

    def samples(pool: ThreadPoolExecutor) -> Iterator[Sample]:
        checked = pool.map(lambda f: _checked(src, f[0]), shard.files)
        for (relative, label, _, key), (data, problem, size) in zip(
            shard.files, checked, strict=True
        ):
            if data is None:
                skipped.append([f"{split_dir}/{relative}", str(problem)])
                continue
            per_class[label] += 1
            sizes.append(size)
            extension = relative.rsplit(".", 1)[-1].lower()
            yield Sample(key, extension, data, label)

    tar, index = f"{shard.name}.tar", f"{shard.name}.idx"
    try:
        if dst.is_local:
            (dst / shard.split).mkdir()
        with ThreadPoolExecutor(READ_THREADS) as pool:
            with dst.fs.open_output_stream((dst / tar).path) as stream:
                written = write_shard(samples(pool), stream, label_digits)
        if written.images:
            (dst / index).write_text(written.index)
        else:  # every image of the shard was unusable: nothing to read
            dst.fs.delete_file((dst / tar).path)
    except (OSError, StorageError) as exc:
        raise DataError(f"{dst / tar}: cannot write: {exc}") from None
    record = {
        "name": shard.name,
        "split": shard.split,
        "number": shard.number,
        "tar": tar,
        "index": index,
        "images": written.images,
        "bytes": written.bytes,
        "sha256": written.sha256,
        "per_class": per_class,
        "skipped": skipped,
        "min_size": [min(h for h, _ in sizes), min(w for _, w in sizes)] if sizes else None,
        "max_size": [max(h for h, _ in sizes), max(w for _, w in sizes)] if sizes else None,
        # Where it was packed (not part of the data set: the manifest leaves it out).
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    (dst / DONE / f"{shard.split}-{shard.number:06d}.json").write_text(json.dumps(record))
    return record


# -- runners --------------------------------------------------------------------------------


def local_runner(tasks: Sequence[Task], done: Callable[[dict[str, Any]], None]) -> None:
    """Pack the shards one after another in this process."""
    for task in tasks:
        done(pack_shard(*task))


def ray_runner(tasks: Sequence[Task], done: Callable[[dict[str, Any]], None]) -> None:
    """Pack the shards as Ray tasks (one CPU each) on the cluster this process is connected
    to; a task lost with its node is retried elsewhere."""
    import ray

    remote = ray.remote(num_cpus=1, max_retries=3)(pack_shard)
    pending = [remote.remote(*task) for task in tasks]
    try:
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            for ref in finished:
                done(ray.get(ref))
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


# -- the whole pack -------------------------------------------------------------------------


@dataclass
class PackResult:
    """What a pack did."""

    destination: str
    manifest: Manifest
    packed: list[dict[str, Any]]  # records of the shards written by this call
    reused: int  # shards an earlier, interrupted call had finished
    seconds: float
    already_packed: bool = False
    plan_shards: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        m = self.manifest
        return {
            "destination": self.destination,
            "manifest": f"{self.destination.rstrip('/')}/{MANIFEST}",
            "source": m.source,
            "digest": m.digest,
            "classes": len(m.classes),
            "splits": {
                name: {
                    "images": entry.images,
                    "shards": len(entry.shards),
                    "bytes": sum(s.bytes for s in entry.shards),
                    "digest": entry.digest,
                }
                for name, entry in m.splits.items()
            },
            "image_size": m.image_size,
            "skipped": list(m.skipped),
            "shards_packed_now": len(self.packed),
            "shards_already_done": self.reused,
            "already_packed": self.already_packed,
            "workers": sorted({r["worker"] for r in self.packed}),
            "seconds": round(self.seconds, 3),
        }


def _exists(path: StoragePath) -> bool:
    try:
        return path.exists()
    except StorageError as exc:
        raise DataError(str(exc)) from None


def _load_or_plan(options: PackOptions, dst: StoragePath) -> PackPlan:
    """The plan of an interrupted pack into `dst` (which must have the same options), else a
    new one written there (`dst` must then be empty)."""
    plan_path = dst / PLAN
    if _exists(plan_path):
        plan = PackPlan.from_bytes(plan_path.read_bytes(), str(plan_path))
        if plan.options != options:
            differences = _differences(plan.options, options)
            raise DataError(
                f"{dst} holds an unfinished pack with other options ({differences}): resume it "
                "with the same ones, or pack into another folder"
            )
        return plan
    if dst.is_dir() and any(True for _ in dst.iterdir()):
        raise DataError(f"{dst}: not empty, and not a pack in progress: choose an empty folder")
    plan = make_plan(options)
    plan_path.write_bytes(plan.to_bytes())
    return plan


def _differences(old: PackOptions, new: PackOptions) -> str:
    return ", ".join(
        f"{name} {getattr(old, name)!r} there, {getattr(new, name)!r} now"
        for name in ("source", "train_dir", "val_dir", "seed", "shard_bytes")
        if getattr(old, name) != getattr(new, name)
    )


def _finished(dst: StoragePath) -> dict[str, dict[str, Any]]:
    """Records of the shards an earlier call finished, by shard name."""
    records = {}
    for path in (dst / DONE).iterdir():
        if path.name.endswith(".json"):
            record = json.loads(path.read_text())
            records[record["name"]] = record
    return records


def assemble_manifest(plan: PackPlan, records: dict[str, dict[str, Any]]) -> Manifest:
    """The manifest of a finished pack, from its plan and every shard's record."""
    classes = plan.classes
    splits = {}
    for split in SPLITS:
        ours = [records[s.name] for s in plan.shards if s.split == split]
        shards = tuple(
            ShardEntry(r["tar"], r["index"], r["images"], r["bytes"], r["sha256"])
            for r in ours
            if r["images"]
        )
        counts = [sum(r["per_class"][i] for r in ours) for i in range(len(classes))]
        splits[split] = SplitEntry(
            images=sum(counts),
            per_class=dict(zip(classes, counts, strict=True)),
            digest=split_digest(classes, shards),
            shards=shards,
        )
    sizes = [r for r in records.values() if r["min_size"]]
    image_size = (
        {
            "min": [min(r["min_size"][0] for r in sizes), min(r["min_size"][1] for r in sizes)],
            "max": [max(r["max_size"][0] for r in sizes), max(r["max_size"][1] for r in sizes)],
        }
        if sizes
        else {}
    )
    skipped = [{"path": p, "reason": why} for p, why in plan.skipped]
    skipped += [{"path": p, "reason": why} for r in records.values() for p, why in r["skipped"]]
    return Manifest(
        source=plan.options.source,
        classes=classes,
        label_digits=plan.label_digits,
        splits=splits,
        digest=data_set_digest(splits),
        seed=plan.options.seed,
        shard_bytes=plan.options.shard_bytes,
        image_size=image_size,
        skipped=tuple(sorted(skipped, key=lambda item: item["path"])),
    )


def pack(
    options: PackOptions,
    destination: str,
    *,
    runner: Runner = local_runner,
    started: Callable[[PackPlan, dict[str, dict[str, Any]]], None] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> PackResult:
    """Pack `options.source` into `destination`, resuming an interrupted pack there.

    `started(plan, finished records)` is called once the plan is known, `progress(record)`
    after each shard. DataError for unusable input (names the path at fault).
    """
    began = time.monotonic()
    try:
        dst = StoragePath.of(destination)
    except StorageError as exc:
        raise DataError(str(exc)) from None
    if _exists(dst / MANIFEST):
        manifest = read_manifest(dst)
        done = PackOptions(manifest.source, options.train_dir, options.val_dir,
                           manifest.seed, manifest.shard_bytes)  # fmt: skip
        if done != options:
            raise DataError(
                f"{dst} already holds a packed data set with other options "
                f"({_differences(done, options)}): pack into another folder"
            )
        return PackResult(str(dst), manifest, [], 0, time.monotonic() - began, True)
    try:
        plan = _load_or_plan(options, dst)
        records = _finished(dst)
    except (StorageError, OSError) as exc:  # e.g. DST is a file, or a bucket that is not there
        raise DataError(f"{dst}: cannot write there: {exc}") from None
    reused = len(records)
    if started is not None:
        started(plan, records)
    tasks = [
        (options.source, options.split_dir(s.split), s, plan.label_digits, len(plan.classes),
         str(dst))
        for s in plan.shards
        if s.name not in records
    ]  # fmt: skip
    packed: list[dict[str, Any]] = []

    def done(record: dict[str, Any]) -> None:
        records[record["name"]] = record
        packed.append(record)
        if progress is not None:
            progress(record)

    runner(tasks, done)
    manifest = assemble_manifest(plan, records)
    (dst / MANIFEST).write_text(manifest.to_json())
    dst.fs.delete_dir((dst / WORK).path)
    return PackResult(
        str(dst), manifest, packed, reused, time.monotonic() - began, plan_shards=len(plan.shards)
    )


def default_source(path: str) -> str:
    """A source as the plan records it: a URI as given, a local path made absolute."""
    return path if "://" in path and not path.startswith("file://") else str(Path(path).resolve())
