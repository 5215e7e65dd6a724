"""`predict`: class names of new image files, from a model trained on two colours."""

from __future__ import annotations

from pathlib import Path

from resnetctl.inference.predict import predict
from resnetctl.inference.source import load_model
from tests.inference.conftest import COLOURS, colour_image


def test_new_images_get_their_class_names(colour_run: tuple[Path, Path], tmp_path: Path) -> None:
    loaded = load_model(str(colour_run[1]))
    files, truth = [], []
    for c, (name, rgb) in enumerate(COLOURS.items()):
        for i in range(3):
            # Unseen noise, and a larger size than training: predict resizes like validation.
            files.append(
                colour_image(tmp_path / f"{name}{i}.png", rgb, seed=99 + 10 * c + i, size=24)
            )
            truth.append(name)
    # Batches of 4 over 6 files: the last batch is partial and must not shift the results.
    results = predict(loaded, files, batch_size=4)
    assert [r.file for r in results] == [str(f) for f in files]
    assert [r.labels[0] for r in results] == truth
    assert all(len(r.labels) == 2 and r.probabilities[0] > 0.5 for r in results)
    assert all(abs(sum(r.probabilities) - 1) < 1e-4 for r in results)
