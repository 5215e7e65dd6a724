"""`resnetctl predict MODEL IMAGE...`: the top-5 classes of image files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from resnetctl.cli._model_arg import AllowPickleOption, ModelArg, TrackingOption, load
from resnetctl.cli.common import BatchSizeOption, JsonOption, err, fail, out, print_json
from resnetctl.cli.image_progress import ImageBars


def predict(
    model: ModelArg,
    images: Annotated[
        list[Path],
        typer.Argument(metavar="IMAGE...", help="JPEG or PNG files.", show_default=False),
    ],
    top: Annotated[
        int, typer.Option("--top", "-k", min=1, metavar="K", help="Classes per image.")
    ] = 5,
    batch_size: BatchSizeOption = 32,
    tracking_uri: TrackingOption = None,
    allow_pickle: AllowPickleOption = False,
    json_: JsonOption = False,
) -> None:
    """Name the most probable classes of image files.

    Classes are named by the class folders the model was trained on; the images go through the
    model's validation preprocessing.

    Examples:

      resnetctl predict quickstart-20261203-075655 scan1.png scan2.png  # needs: a run

    Exit codes: 0 predicted, 2 an unknown model or an image that cannot be read.
    """
    from resnetctl.inference.predict import predict as run

    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        fail(f"no such image file: {', '.join(missing[:5])}")
    loaded = load(model, tracking_uri, allow_pickle)
    try:
        with ImageBars(err, enabled=not json_) as bars:
            advance = bars.counter("predict", len(images))
            results = run(loaded, list(images), top=top, batch_size=batch_size, on_images=advance)
    except (ValueError, RuntimeError) as exc:
        fail(str(exc).splitlines()[0])
    if json_:
        print_json({"model": model, "predictions": [r.as_dict() for r in results]})
        return
    table = Table(title=f"{model}: top-{top}")
    table.add_column("image")
    for rank in range(1, top + 1):
        table.add_column(f"#{rank}")
    for r in results:
        cells = [
            f"{escape(label)} {prob:.1%}"
            for label, prob in zip(r.labels, r.probabilities, strict=True)
        ]
        table.add_row(escape(r.file), *cells, *[""] * (top - len(cells)))
    out.print(table)
