"""Multi-scale testing batched by shape: the same scores as forwarding each view of each image
alone, in fewer forwards, and shards that cover every image once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from resnetctl.data.loader import shard_bounds
from resnetctl.inference.evaluate import folder_layout, multi_scale_sizes
from resnetctl.inference.multiscale import ShapeBuckets, multi_scale_batches
from resnetctl.inference.preprocess import as_imagenet
from resnetctl.inference.source import load_model
from tests.inference.conftest import COLOURS

#: (height, width) of the images, several of each: four aspect ratios, one of them square.
SHAPES = ((16, 16), (16, 24), (24, 16), (20, 30))


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`blue/` and `red/` class folders of noisy PNGs in the four shapes, interleaved."""
    from PIL import Image

    root = tmp_path_factory.mktemp("mixed")
    for c, (name, rgb) in enumerate(COLOURS.items()):
        for i in range(7):
            height, width = SHAPES[(i + c) % len(SHAPES)]
            rng = np.random.default_rng(100 * c + i)
            pixels = np.clip(np.array(rgb) + rng.normal(0, 25, (height, width, 3)), 0, 255)
            (root / name).mkdir(exist_ok=True)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def one_at_a_time(model, cfg, layout, scales: list[int]) -> list[torch.Tensor]:
    """Per image of the folder, in file-list order: the mean softmax over every scale and both
    mirror states, each view alone through DALI (mirrored by DALI) and the network: the protocol
    as it was first written, one image and one shape at a time."""
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def
    def views():
        jpegs, _ = fn.readers.file(
            file_root=str(layout.val_dir), file_list=str(layout.val_list), random_shuffle=False
        )
        images = fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)
        return tuple(
            fn.crop_mirror_normalize(
                fn.resize(images, resize_shorter=float(scale), antialias=True),
                dtype=types.FLOAT,
                output_layout="CHW",
                mean=list(cfg.mean),
                std=list(cfg.std),
                mirror=mirror,
            )
            for scale in scales
            for mirror in (0, 1)
        )

    pipe = views(batch_size=1, num_threads=1, device_id=None, seed=0)
    pipe.build()
    scores = []
    with torch.no_grad():
        for _ in range(layout.val_files):
            outputs = pipe.run()
            probs = [
                model(torch.from_numpy(np.array(view.at(0)))[None]).softmax(dim=-1)[0]
                for view in outputs
            ]
            scores.append(torch.stack(probs).mean(dim=0))
    del pipe
    return scores


def test_shape_buckets_give_one_at_a_time_scores_on_every_shard(
    colour_run: tuple[Path, Path], mixed_folder: Path
) -> None:
    loaded = load_model(str(colour_run[1]))
    spec = loaded.spec
    assert spec is not None and spec.pipeline.flip  # mirrors are part of the protocol here
    layout = folder_layout(mixed_folder)
    scales = multi_scale_sizes(spec.pipeline)
    cfg = as_imagenet(spec.pipeline, scales[0])
    reference = one_at_a_time(loaded.model, cfg, layout, scales)
    assert len(reference) == layout.val_files == 14

    for shards in (1, 2):
        found: dict[int, tuple[torch.Tensor, int]] = {}
        for shard in range(shards):
            first, _ = shard_bounds(layout.val_files, shard, shards)
            with torch.no_grad():
                for keys, scores, labels in multi_scale_batches(
                    loaded.model,
                    cfg,
                    layout,
                    batch_size=4,
                    scales=scales,
                    mirrors=True,
                    threads=1,
                    shard_id=shard,
                    num_shards=shards,
                ):
                    for key, row, label in zip(keys.tolist(), scores, labels.tolist(), strict=True):
                        assert first + key not in found  # every image once
                        found[first + key] = (row, label)
        assert sorted(found) == list(range(layout.val_files))
        for index, (row, _) in found.items():
            torch.testing.assert_close(row, reference[index], rtol=1e-5, atol=1e-6)
        # The file list's labels: blue images first (label 0), then red.
        assert [found[i][1] for i in range(14)] == [0] * 7 + [1] * 7


def test_buckets_forward_full_batches_across_dali_batches(
    colour_run: tuple[Path, Path], mixed_folder: Path
) -> None:
    loaded = load_model(str(colour_run[1]))
    spec = loaded.spec
    assert spec is not None
    layout = folder_layout(mixed_folder)
    scales = multi_scale_sizes(spec.pipeline)
    cfg = as_imagenet(spec.pipeline, scales[0])
    forwards: dict[int, list[int]] = {}

    sizes: list[int] = []

    def spy(images: torch.Tensor) -> torch.Tensor:
        sizes.append(images.shape[0] // 2)  # each forward holds the views and their mirrors
        return loaded.model(images)

    for pending in (0, 2**30):
        sizes.clear()

        with torch.no_grad():
            images = sum(
                len(keys)
                for keys, _, _ in multi_scale_batches(
                    spy,
                    cfg,
                    layout,
                    batch_size=4,
                    scales=scales,
                    mirrors=True,
                    threads=1,
                    pending_bytes=pending,
                )
            )
        assert images == 14 and sum(sizes) == 14 * len(scales)
        forwards[pending] = list(sizes)
    # Per DALI batch of 4 mixed shapes: mostly forwards of one or two images. Across batches:
    # the 3-4 images of each shape per scale in one forward (14 images, 4 shapes, 5 scales).
    assert len(forwards[2**30]) == len(SHAPES) * len(scales) < len(forwards[0])
    assert max(forwards[0]) <= 2


def test_a_memory_budget_forwards_the_fullest_bucket_early() -> None:
    calls: list[int] = []

    def scores(images: torch.Tensor) -> torch.Tensor:
        calls.append(images.shape[0])
        return torch.ones(images.shape[0], 3)

    view_bytes = 3 * 8 * 8 * 4
    buckets = ShapeBuckets(scores, views_per_image=1, batch_size=10, pending_bytes=3 * view_bytes)
    for key, side in enumerate((8, 8, 8, 9)):
        buckets.add_image(key, label=key % 3)
        buckets.add_view(key, torch.zeros(3, side, side))
    assert calls == []  # nothing full yet
    buckets.flush_if_over()  # 3 of 8 x 8 and 1 of 9 x 9 are over the budget: the 8s go
    assert calls == [3]
    assert sorted(key for key, _, _ in buckets.finished()) == [0, 1, 2]
    buckets.flush()
    assert calls == [3, 1]
    ((key, row, label),) = buckets.finished()
    assert (key, label) == (3, 0) and row.tolist() == [1.0, 1.0, 1.0]
