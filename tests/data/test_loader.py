"""The loader the training loop iterates: shards, epochs, seeds, devices, tensor formats."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resnetctl.data import (
    DataError,
    build_loader,
    prepare_dataset,
    resolve_device,
)
from resnetctl.spec.data import CifarPipeline, DataSpec, DigitsSource
from tests.data._helpers import cifar_spec, decode_indices, index_folder

TRAIN, VAL = 41, 25  # divisible by neither 2 nor 3 nor the batch size


@pytest.fixture
def indexed(tmp_path: Path):
    spec = cifar_spec(index_folder(tmp_path / "idx", train=TRAIN, val=VAL, classes=3))
    return spec, prepare_dataset(spec)


def _epoch(loader) -> list[list[int]]:
    return [decode_indices(images) for images, _ in loader]


@pytest.mark.parametrize("num_shards", [1, 2, 3])
def test_validation_shards_cover_every_image_once(indexed, num_shards: int) -> None:
    spec, layout = indexed
    seen: list[int] = []
    for shard in range(num_shards):
        loader = build_loader(
            spec, layout, "val", batch_size=4, shard_id=shard, num_shards=num_shards
        )
        for _ in range(2):  # a second epoch sees the same shard again, whole
            batches = list(loader)
            assert len(batches) == len(loader)
            indices = [i for images, _ in batches for i in decode_indices(images)]
            labels = [int(v) for _, lab in batches for v in lab]
            assert labels == [i % 3 for i in indices]  # c<i % 3> holds image i
        seen += indices
    assert sorted(seen) == list(range(VAL))


@pytest.mark.parametrize("num_shards", [2, 3])
def test_training_shards_equal_batch_counts_and_disjoint(indexed, num_shards: int) -> None:
    spec, layout = indexed
    loaders = [
        build_loader(spec, layout, "train", batch_size=4, shard_id=s, num_shards=num_shards, seed=5)
        for s in range(num_shards)
    ]
    expected = TRAIN // num_shards // 4
    assert [len(lo) for lo in loaders] == [expected] * num_shards
    for _ in range(2):
        epochs = [_epoch(lo) for lo in loaders]
        assert [len(e) for e in epochs] == [expected] * num_shards
        assert all(len(b) == 4 for e in epochs for b in e)  # full batches only
        flat = [i for e in epochs for b in e for i in b]
        assert len(set(flat)) == len(flat) == num_shards * expected * 4
        assert set(flat) <= set(range(TRAIN))


def test_epochs_reshuffle_and_seeds_are_reproducible(indexed) -> None:
    spec, layout = indexed

    def loader(seed: int):
        return build_loader(spec, layout, "train", batch_size=4, seed=seed)

    a = loader(1)
    first, second = _epoch(a), _epoch(a)
    assert a.epoch == 2
    assert first != second  # iterating again is the next epoch, shuffled anew
    b = loader(1)
    assert _epoch(b) == first and _epoch(b) == second  # same seed, same batches
    c = loader(1)
    c.set_epoch(1)
    assert _epoch(c) == second  # resuming at epoch 1 sees what epoch 1 saw
    assert _epoch(loader(2)) != first  # another seed, other batches


def test_same_seed_same_augmentation(tmp_path: Path) -> None:
    spec = cifar_spec(index_folder(tmp_path / "aug", train=16, val=4), pad=2, flip=True)
    layout = prepare_dataset(spec)
    runs = [
        torch.cat([x for x, _ in build_loader(spec, layout, "train", batch_size=8, seed=s)])
        for s in (3, 3, 4)
    ]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_break_mid_epoch_then_next_epoch_is_whole(indexed) -> None:
    spec, layout = indexed
    loader = build_loader(spec, layout, "train", batch_size=4, seed=0)
    next(iter(loader))
    assert len(_epoch(loader)) == len(loader)


def test_tensor_formats_and_channels_last(indexed) -> None:
    spec, layout = indexed
    images, labels = next(iter(build_loader(spec, layout, "train", batch_size=4)))
    assert images.shape == (4, 3, 8, 8) and images.dtype == torch.float32
    assert images.is_contiguous() and images.device.type == "cpu"
    assert labels.shape == (4,) and labels.dtype == torch.int64
    cl_images, _ = next(iter(build_loader(spec, layout, "val", batch_size=4, channels_last=True)))
    plain, _ = next(iter(build_loader(spec, layout, "val", batch_size=4)))
    assert cl_images.shape == (4, 3, 8, 8)
    assert cl_images.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(cl_images, plain)


def test_batches_are_not_overwritten_by_later_ones(indexed) -> None:
    spec, layout = indexed
    batches = list(build_loader(spec, layout, "val", batch_size=4))
    indices = [i for images, _ in batches for i in decode_indices(images)]
    assert indices == sorted(range(VAL), key=lambda i: (i % 3, i))  # file-list order


def test_digits_end_to_end_with_the_cifar_pipeline() -> None:
    spec = DataSpec(source=DigitsSource(image_size=16), pipeline=CifarPipeline(crop=16, pad=2))
    layout = prepare_dataset(spec)
    loader = build_loader(spec, layout, "val", batch_size=128)
    labels = torch.cat([lab for _, lab in loader])
    assert len(labels) == 360 and set(labels.tolist()) == set(range(10))
    images, _ = next(iter(build_loader(spec, layout, "train", batch_size=64, seed=0)))
    assert images.shape == (64, 3, 16, 16)


def test_resolve_device() -> None:
    assert resolve_device("auto", cuda_available=False) == "cpu"
    assert resolve_device("auto", cuda_available=True) == "gpu"
    assert resolve_device("cpu", cuda_available=True) == "cpu"
    assert resolve_device("gpu", cuda_available=True) == "gpu"
    with pytest.raises(DataError, match="no CUDA device"):
        resolve_device("gpu", cuda_available=False)


def test_argument_errors(indexed, tmp_path: Path) -> None:
    spec, layout = indexed
    with pytest.raises(ValueError, match="pipeline is None"):
        build_loader(spec.model_copy(update={"pipeline": None}), layout, batch_size=4)
    with pytest.raises(ValueError, match="device_id=None"):
        build_loader(spec, layout, batch_size=4, device="cpu", device_id=0)
    with pytest.raises(ValueError, match="shard_id"):
        build_loader(spec, layout, batch_size=4, shard_id=2, num_shards=2)
    with pytest.raises(DataError, match=str(layout.train_dir)):
        build_loader(spec, layout, "train", batch_size=16, num_shards=3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_loader_yields_cuda_tensors(indexed) -> None:
    spec, layout = indexed
    loader = build_loader(spec, layout, "val", batch_size=4, device="gpu", device_id=0)
    images, labels = next(iter(loader))
    assert images.is_cuda and labels.is_cuda and images.dtype == torch.float32
    torch.cuda.synchronize()
    assert decode_indices(images.cpu()) == [0, 1, 2, 3]
