"""`data.source.kind: shards` through the loader: each rank a fixed share of equal batch
counts, epochs reshuffled and reproducible, validation covering every image once, the
pipelines after the reader unchanged, and DALI's checkpoint restoring the reader mid-epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from resnetctl.data import DataError, build_loader, build_ten_crop_loader, prepare_dataset
from resnetctl.data.pipelines import build_pipeline
from resnetctl.data.readers import derive_seed
from resnetctl.data.shards.manifest import ShardEntry
from resnetctl.data.shards.reading import ShardSplit, share_pieces
from resnetctl.spec.data import ShardsSource
from tests.data._helpers import cifar_spec, decode_indices, imagenet_spec, index_folder
from tests.data.shards._helpers import pack_folder

TRAIN, VAL = 61, 29  # divisible by neither 2 nor 3 nor the batch size


def _entry(number: int, images: int) -> ShardEntry:
    return ShardEntry(f"{number}.tar", f"{number}.idx", images, 0, "")


@pytest.mark.parametrize("sizes", [(7,), (5, 9, 1, 12), (40, 40, 40)])
@pytest.mark.parametrize("workers", [1, 2, 3, 7])
def test_shares_are_contiguous_cover_the_split_and_differ_by_at_most_one(
    sizes: tuple[int, ...], workers: int
) -> None:
    shards = tuple(_entry(i, n) for i, n in enumerate(sizes))
    starts = np.cumsum((0, *sizes))
    seen: list[int] = []
    for rank in range(workers):
        offsets: list[int] = []
        for piece in share_pieces(shards, rank, workers):
            base = int(starts[shards.index(piece.shard)])
            offsets += range(base + piece.first, base + piece.stop)
        assert offsets == list(range(offsets[0], offsets[-1] + 1))  # one contiguous range
        seen += offsets
    assert seen == list(range(sum(sizes)))
    lengths = [
        sum(p.stop - p.first for p in share_pieces(shards, r, workers)) for r in range(workers)
    ]
    assert max(lengths) - min(lengths) <= 1


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory):
    """An index folder (pixels tell each image's index; class c<i % 3>) packed into shards of
    about 16 images, and the same folder read as a folder."""
    root = tmp_path_factory.mktemp("shards")
    folder = index_folder(root / "folder", train=TRAIN, val=VAL, classes=3)
    # 8x8 PNGs: ~120 bytes, 2 KiB a sample in the tar; 64 KiB shards hold about 20.
    pack_folder(folder, root / "packed", 64 << 10)
    return folder, root / "packed"


def _shard_spec(packed_root: Path, **pipeline):
    spec = cifar_spec(Path("unused"), **pipeline)
    return spec.model_copy(update={"source": ShardsSource(root=packed_root, shuffle_buffer=16)})


def _indices(loader) -> list[list[int]]:
    return [decode_indices(images) for images, _ in loader]


def test_the_manifest_is_the_layout(packed) -> None:
    _, root = packed
    layout = prepare_dataset(_shard_spec(root))
    assert (layout.train_files, layout.val_files) == (TRAIN, VAL)
    assert layout.classes == ("c0", "c1", "c2")
    assert len(layout.shards("train")) >= 3  # several shards, so shares cross them


@pytest.mark.parametrize("workers", [2, 3])
def test_training_ranks_get_equal_full_batches_of_disjoint_images(packed, workers) -> None:
    _, root = packed
    spec = _shard_spec(root)
    layout = prepare_dataset(spec)
    loaders = [
        build_loader(spec, layout, "train", batch_size=4, shard_id=r, num_shards=workers, seed=5)
        for r in range(workers)
    ]
    expected = TRAIN // workers // 4
    assert [len(lo) for lo in loaders] == [expected] * workers
    shares = []
    for _ in range(2):
        epochs = [_indices(lo) for lo in loaders]
        assert [len(e) for e in epochs] == [expected] * workers
        assert all(len(batch) == 4 for e in epochs for batch in e)
        flat = [i for e in epochs for b in e for i in b]
        assert len(set(flat)) == len(flat)  # no image twice in an epoch, across ranks
        shares.append([{i for b in e for i in b} for e in epochs])
    # Each rank's images come from its own share, the same part of the split every epoch.
    for rank in range(workers):
        pieces = ShardSplit(
            layout, "train", shuffled=True, keep=0, shard_id=rank, num_shards=workers,
            seed=5, batch_size=4,
        ).pieces  # fmt: skip
        assert len(pieces) <= len(layout.shards("train")) // workers + 2
        assert shares[0][rank] | shares[1][rank] <= _share_indices(root, pieces)


def _share_indices(root: Path, pieces) -> set[int]:
    """Image indices of the samples in `pieces` (from the tars' keys: c<k>/<index>)."""
    from tests.data.shards._helpers import tar_samples

    found = set()
    for piece in pieces:
        keys = list(tar_samples(root / piece.shard.tar))
        found |= {int(key.rsplit("/", 1)[-1]) for key in keys[piece.first : piece.stop]}
    return found


def test_epochs_reshuffle_and_the_seed_reproduces_them(packed) -> None:
    _, root = packed
    spec = _shard_spec(root)
    layout = prepare_dataset(spec)

    def loader(seed: int):
        return build_loader(spec, layout, "train", batch_size=4, seed=seed)

    a = loader(1)
    first, second = _indices(a), _indices(a)
    assert first != second  # a new order every epoch
    b = loader(1)
    assert _indices(b) == first and _indices(b) == second
    c = loader(1)
    c.set_epoch(1)
    assert _indices(c) == second  # a resumed run sees what epoch 1 saw
    assert _indices(loader(2)) != first


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_validation_covers_every_image_once_with_its_label(packed, workers) -> None:
    _, root = packed
    spec = _shard_spec(root)
    layout = prepare_dataset(spec)
    seen = []
    for rank in range(workers):
        loader = build_loader(spec, layout, "val", batch_size=4, shard_id=rank, num_shards=workers)
        batches = list(loader)
        assert len(batches) == len(loader)
        indices = [i for images, _ in batches for i in decode_indices(images)]
        labels = [int(v) for _, lab in batches for v in lab]
        assert labels == [i % 3 for i in indices]
        seen += indices
    assert sorted(seen) == list(range(VAL))


def test_the_pipelines_after_the_reader_are_those_of_an_image_folder(packed) -> None:
    folder, root = packed
    for spec_of in (cifar_spec, imagenet_spec):
        on_disk = spec_of(folder)
        shards = on_disk.model_copy(update={"source": ShardsSource(root=root)})
        outputs = []
        for spec in (on_disk, shards):
            layout = prepare_dataset(spec)
            loaders = [build_loader(spec, layout, "val", batch_size=5)]
            if spec.pipeline.kind == "imagenet":
                loaders.append(build_ten_crop_loader(spec, layout, batch_size=5))
            outputs.append([_by_label_and_image(loader) for loader in loaders])
        assert len(outputs[0][0]) == VAL
        for folder_out, shard_out in zip(*outputs, strict=True):
            assert folder_out.keys() == shard_out.keys()
            for key, tensor in folder_out.items():
                assert torch.equal(tensor, shard_out[key]), key


def _by_label_and_image(loader) -> dict[tuple[int, bytes], torch.Tensor]:
    out = {}
    for images, labels in loader:
        for image, label in zip(images, labels, strict=True):
            out[(int(label), image.numpy().tobytes())] = image
    return out


@pytest.mark.parametrize("prefetch", [1, 2, 3])
@pytest.mark.parametrize("pipeline", ["cifar", "imagenet"])
def test_a_dali_checkpoint_restores_the_shard_reader_mid_epoch(packed, prefetch, pipeline) -> None:
    _, root = packed
    if pipeline == "cifar":
        spec = _shard_spec(root, pad=2, flip=True)
    else:  # random crops, flips, colour and a RandAugment policy: all their random state
        spec = imagenet_spec(root, auto_augment="rand_augment", flip=True)
        spec = spec.model_copy(update={"source": ShardsSource(root=root, shuffle_buffer=16)})
    layout = prepare_dataset(spec)
    split = ShardSplit(
        layout, "train", shuffled=True, keep=0, shard_id=1, num_shards=2, seed=3, batch_size=4,
        source=spec.source,
    )  # fmt: skip

    def build(**options):
        return build_pipeline(
            spec.pipeline,
            "train",
            reader=split.reader(epoch=2, reader_seed=derive_seed(3, 2)),
            batch_size=4,
            seed=11,
            threads=2,
            prefetch=prefetch,
            device="cpu",
            device_id=None,
            enable_checkpointing=True,
            **options,
        )

    def batches(pipe, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for _ in range(n):
            images, labels = pipe.run()[:2]
            out.append((np.array(images.as_tensor()), np.array(labels.as_tensor())))
        return out

    pipe = build()
    head = batches(pipe, 3)
    checkpoint = pipe.checkpoint()
    expected = batches(pipe, 3)
    del pipe
    restored = batches(build(checkpoint=checkpoint), 3)
    fresh = batches(build(), 3)
    assert _same(restored, expected)  # bit-identical: reader position and random state
    # Without the checkpoint a pipeline starts over: the restore is what continued it.
    assert _same(fresh, head) and not _same(expected, head)


def _same(a: list, b: list) -> bool:
    return all(
        np.array_equal(x_img, y_img) and np.array_equal(x_lab, y_lab)
        for (x_img, x_lab), (y_img, y_lab) in zip(a, b, strict=True)
    )


def test_too_few_images_for_the_ranks_is_an_error_naming_the_split(packed) -> None:
    _, root = packed
    spec = _shard_spec(root)
    layout = prepare_dataset(spec)
    with pytest.raises(DataError, match=f"{root}/val: {VAL} images are too few"):
        build_loader(spec, layout, "val", batch_size=4, shard_id=0, num_shards=VAL + 1)
