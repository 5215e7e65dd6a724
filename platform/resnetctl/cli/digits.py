"""`resnetctl data digits DIR`: the bundled digits as an image folder of one's own, to look at,
predict on, or fine-tune with (docs/after-training.md does all three)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from resnetctl.cli.common import JsonOption, err, fail, print_json


def _classes(text: str | None) -> list[str] | None:
    if text is None:
        return None
    found = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in found if c not in {str(d) for d in range(10)}]
    if bad or not found:
        fail(f"--classes {text!r}: expected digits 0-9, e.g. 3,8")
    return found


def digits(
    folder: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            help="Where to write train/CLASS/*.png and val/CLASS/*.png.",
            show_default=False,
        ),
    ],
    classes: Annotated[
        str | None,
        typer.Option("--classes", metavar="C,C,...", help="Only these digits (default: all)."),
    ] = None,
    per_class: Annotated[
        int | None,
        typer.Option(
            "--per-class", min=1, metavar="N", help="Only the first N scans of each class."
        ),
    ] = None,
    size: Annotated[
        int, typer.Option("--size", min=8, metavar="PIXELS", help="Side of the square images.")
    ] = 32,
    json_: JsonOption = False,
) -> None:
    """Write the bundled digits as an image folder (train/, val/).

    The same 1,797 scans and split as the quickstart trains on (1,437 train, 360 val), as RGB
    PNG files upsampled to --size pixels.

    Examples:

      resnetctl data digits three-eight --classes 3,8

      resnetctl data digits scans --classes 3,8,5,0 --per-class 1 --json

    Exit codes: 0 written, 2 DIR exists and is not empty, or a bad option.
    """
    from resnetctl.data.digits import write_digits
    from resnetctl.spec.data import DigitsSource

    wanted = _classes(classes)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        fail(f"{folder} exists and is not an empty folder")
    val_fraction = DigitsSource.model_fields["val_fraction"].default
    folder.mkdir(parents=True, exist_ok=True)
    write_digits(folder, size, val_fraction)
    counts: dict[str, dict[str, int]] = {}
    for split in ("train", "val"):
        for class_folder in sorted((folder / split).iterdir()):
            if wanted is not None and class_folder.name not in wanted:
                shutil.rmtree(class_folder)
                continue
            files = sorted(class_folder.iterdir())
            for extra in files[per_class:] if per_class else []:
                extra.unlink()
            counts.setdefault(split, {})[class_folder.name] = min(len(files), per_class or 10**9)
    if json_:
        print_json({"folder": str(folder), "images": counts})
        return
    totals = ", ".join(f"{sum(c.values())} {split}" for split, c in counts.items())
    err.print(f"wrote {escape(str(folder))}: {totals} images", highlight=False)
