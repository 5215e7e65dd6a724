"""`resnetctl data ...`: look at data sets before training on them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from resnetctl.cli.common import EXIT_JOB_FAILED, JsonOption, err, fail, out, print_json

if TYPE_CHECKING:  # the data package loads DALI and torch: only when a command runs
    from resnetctl.data.inspect import InspectReport
    from resnetctl.data.shards.pack import PackResult

app = typer.Typer(help="Inspect data sets and pack them into shards.")

_MAX_ROWS = 20
#: Exit status of a pack stopped by Ctrl-C (SIGINT), as `submit`'s.
_EXIT_INTERRUPTED = 130


@app.callback()
def _data() -> None:
    """Inspect data sets (image folders in ImageNet's layout) and pack them into shards."""


def _print_files(console: Console, what: str, files: list[dict[str, str]]) -> None:
    """`N file(s) <what>:`, then the path and reason of the first `_MAX_ROWS`."""
    if not files:
        return
    console.print(f"[yellow]{len(files)} file(s) {what}:[/yellow]")
    for item in files[:_MAX_ROWS]:
        console.print(f"  {item['path']}: {item['reason']}", markup=False, highlight=False)
    if len(files) > _MAX_ROWS:
        console.print(f"  ... {len(files) - _MAX_ROWS} more (see --json)")


def _render(report: InspectReport, console: Console) -> None:
    splits = Table(title=f"{escape(report.root)}: {len(report.classes)} classes")
    for column in ("split", "folder", "classes", "images", "unreadable"):
        splits.add_column(column, justify="right" if column in ("images", "unreadable") else "left")
    for s in report.splits:
        splits.add_row(
            escape(s.name),
            escape(s.directory),
            str(len(s.per_class)),
            str(s.images),
            str(len(s.unreadable)),
        )
    console.print(splits)

    per_class = Table(title="images per class")
    per_class.add_column("class")
    for s in report.splits:
        per_class.add_column(escape(s.name), justify="right")
    for cls in report.classes[:_MAX_ROWS]:
        per_class.add_row(escape(cls), *(str(s.per_class.get(cls, "-")) for s in report.splits))
    if len(report.classes) > _MAX_ROWS:
        more = f"... {len(report.classes) - _MAX_ROWS} more"
        per_class.add_row(more, *("" for _ in report.splits))
    console.print(per_class)

    if report.image_size:
        h, w = report.image_size["height"], report.image_size["width"]
        console.print(
            f"image size over {report.image_size['sampled']} sampled images (H x W): "
            f"min {h['min']} x {w['min']}, median {h['median']:g} x {w['median']:g}, "
            f"max {h['max']} x {w['max']}"
        )
    _print_files(console, "skipped", [u for s in report.splits for u in s.unreadable])
    for problem in report.problems:
        console.print(f"[red]problem:[/red] {escape(problem)}", highlight=False)


@app.command("inspect")
def inspect_command(
    path: Annotated[
        str,
        typer.Argument(
            metavar="PATH",
            help="Data root (with train/ and val/) or a split: a folder or s3://bucket/prefix.",
            show_default=False,
        ),
    ],
    json_output: JsonOption = False,
    sample: Annotated[
        int,
        typer.Option(min=0, metavar="N", help="Images whose size is read for the size summary."),
    ] = 200,
) -> None:
    """Classes, images per split and class, image sizes, unreadable files.

    Example: resnetctl data inspect /data/imagenet --json  # needs: a data set

    Exit codes: 0 the folder can be trained on, 1 it has problems (listed), 2 PATH does not
    exist.
    """
    from resnetctl.data.imagefolder import DataError
    from resnetctl.data.inspect import inspect_dataset

    try:
        report = inspect_dataset(path, sample=sample)
    except DataError as exc:
        fail(str(exc))
    if json_output:
        print_json(report.to_dict())
    else:
        _render(report, out)
    if not report.usable:
        raise typer.Exit(EXIT_JOB_FAILED)


@app.command("pack")
def pack_command(
    src: Annotated[
        str,
        typer.Argument(
            metavar="SRC",
            help="Image folder in ImageNet's layout (train/CLASS/*, val/CLASS/*): a folder "
            "or s3://bucket/prefix.",
            show_default=False,
        ),
    ],
    dst: Annotated[
        str,
        typer.Argument(
            metavar="DST",
            help="Where the shards and manifest.json go: an empty folder or s3://bucket/prefix "
            "(or one an interrupted pack left, to resume it).",
            show_default=False,
        ),
    ],
    shard_size: Annotated[
        str,
        typer.Option(metavar="SIZE", help="Target size of a shard (256MiB, 64MB, or bytes)."),
    ] = "256MiB",
    seed: Annotated[
        int,
        typer.Option(
            min=0, metavar="N", help="Seed of the shuffle that mixes classes across shards."
        ),
    ] = 0,
    train_dir: Annotated[
        str, typer.Option(metavar="DIR", help="Training sub-folder of SRC.")
    ] = "train",
    val_dir: Annotated[
        str, typer.Option(metavar="DIR", help="Validation sub-folder of SRC.")
    ] = "val",
    address: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Pack on a Ray cluster, one task per shard: its GCS address (HEAD:6379), or "
            "`local` for a Ray of this machine's cores. SRC and DST must then be reachable "
            "from every node (buckets, or a shared mount). Default: in this process.",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Pack an image folder into WebDataset shards for `kind: shards`.

    Writes WebDataset tar shards, DALI index files beside them and a manifest. Every image is
    decoded once: corrupt and non-image files are named and left out. Run the same command
    again to resume an interrupted pack (finished shards are kept).

    Exit codes: 0 packed (or already packed), 1 a shard failed, 2 bad input, 130 interrupted.

    Example:

      resnetctl data pack /data/imagenet s3://my-team-resnet/imagenet-shards  # needs: imagenet
    """
    from resnetctl.data.imagefolder import DataError
    from resnetctl.data.shards.pack import PackOptions, default_source, pack
    from resnetctl.units import parse_bytes

    try:
        shard_bytes = parse_bytes(shard_size)
    except ValueError as exc:
        fail(f"--shard-size: {exc}")
    if shard_bytes < _MIN_SHARD:
        fail(f"--shard-size: {shard_size} is below the smallest shard, 64KiB")
    options = PackOptions(default_source(src), train_dir, val_dir, seed, shard_bytes)
    runner, stop_ray = _runner(address)
    view = _PackView(live=not json_output and err.is_terminal)
    try:
        with view:
            result = pack(options, dst, runner=runner, started=view.start, progress=view.advance)
    except DataError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print(
            "[bold yellow]interrupted:[/] finished shards are kept; run the same command "
            "again to pack the rest",
            highlight=False,
        )
        raise typer.Exit(_EXIT_INTERRUPTED) from None
    except Exception as exc:  # a shard task failed (on a Ray worker: wrapped by Ray)
        fail(f"packing failed: {exc}", EXIT_JOB_FAILED)
    finally:
        stop_ray()
    if json_output:
        print_json(result.to_dict())
    else:
        _render_pack(result, out)


_MIN_SHARD = 64 << 10


def _runner(address: str | None):  # type: ignore[no-untyped-def]
    """The pack's runner and what stops the Ray it may have started."""
    from resnetctl.data.shards.pack import local_runner, ray_runner

    if address is None:
        return local_runner, lambda: None
    if address.startswith(("http://", "https://")):
        fail(
            f"--address {address}: `data pack` joins the cluster as a driver: give the head's "
            "GCS address (HEAD:6379), not the dashboard's"
        )
    from resnetctl.launch import embedded

    if address == "local":
        embedded.start(env_vars=embedded.worker_env())
        return ray_runner, embedded.stop
    from resnetctl.launch.auth import ClusterAccessError, check_gcs_access

    try:
        check_gcs_access(address)
    except ClusterAccessError as exc:
        fail(str(exc))
    embedded.ensure_ray(address)
    import ray

    return ray_runner, ray.shutdown


class _PackView:
    """A bar of shards packed (images, MB/s, time left) on a terminal; nothing otherwise."""

    def __init__(self, live: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]packing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("shards  {task.fields[images]:,} images  {task.fields[rate]:.1f} MB/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not live,
        )
        self.task = None
        self.images = 0
        self.bytes = 0
        self.began = 0.0

    def __enter__(self) -> _PackView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, plan, finished: dict) -> None:  # type: ignore[no-untyped-def]
        import time

        self.began = time.monotonic()
        self.images = sum(r["images"] for r in finished.values())
        self.task = self.progress.add_task(
            "pack", total=len(plan.shards), completed=len(finished), images=self.images, rate=0.0
        )

    def advance(self, record: dict) -> None:
        import time

        self.images += record["images"]
        self.bytes += record["bytes"]
        rate = self.bytes / 1e6 / max(time.monotonic() - self.began, 1e-9)
        self.progress.update(self.task, advance=1, images=self.images, rate=rate)


def _render_pack(result: PackResult, console: Console) -> None:
    summary = result.to_dict()
    title = f"{escape(summary['manifest'])}: {summary['classes']} classes"
    table = Table(title=title)
    for column in ("split", "images", "shards", "size"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for name, split in summary["splits"].items():
        size = f"{split['bytes'] / 2**20:,.1f} MiB"
        table.add_row(name, f"{split['images']:,}", str(split["shards"]), size)
    console.print(table)
    console.print(f"digest {summary['digest'][:12]}", highlight=False)
    if summary["already_packed"]:
        console.print("already packed: nothing to do", highlight=False)
    else:
        console.print(
            f"{summary['shards_packed_now']} shard(s) packed in {summary['seconds']:.1f}s"
            + (f", {summary['shards_already_done']} already done" if result.reused else ""),
            highlight=False,
        )
    _print_files(console, "left out", summary["skipped"])
