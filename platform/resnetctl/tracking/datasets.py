"""The train and validation inputs of a run, as MLflow datasets (the run page's "Datasets used"
and the runs table's Datasets column).

Rank 0 describes the data set it prepared (`describe_splits`: plain dicts, no MLflow on the
workers) in its first report of a worker group; the Ray Train controller, the run's one writer,
logs them (`log_datasets`). The digest of an image folder is a fingerprint of the split's file
list (relative paths and labels, in order) and class names: it changes when an image is added,
removed or relabelled, not when a file's bytes change in place (hashing every image of ImageNet
would take minutes). Packed shards (`data.source.kind: shards`) are described by their manifest
alone: its digest covers the shards' bytes, and nothing is listed or read beyond it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

#: The report key that carries `describe_splits` output.
DATASET_REPORT_KEY = "datasets"
#: Split -> the `mlflow.data.context` tag of its input, as MLflow's own examples name them.
CONTEXTS = {"train": "training", "val": "validation"}
DIGEST_CHARS = 12


#: Source kinds whose data set is named after the last part of their `root`.
ROOTED_KINDS = ("imagefolder", "shards")


def data_name(source: Any) -> str:
    """What a run trains on, in a word: `digits`, `synthetic`, or an image folder's or packed
    data set's own name (`imagenet` for /data/imagenet, `train-set` for s3://bucket/train-set)."""
    if source.kind not in ROOTED_KINDS:
        return str(source.kind)
    root = str(source.root).rstrip("/")
    return root.rsplit("/", 1)[-1] or root


def _digest(file_list: Path, classes: tuple[str, ...]) -> str:
    sha = hashlib.sha256("\n".join(classes).encode())
    with open(file_list, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:DIGEST_CHARS]


def _folder_split(layout: Any, split: str) -> dict[str, Any]:
    uri = str(layout.split_dir(split))
    return {
        "part": Path(uri.rstrip("/")).name,
        "source": uri,
        "digest": _digest(layout.split_list(split), tuple(layout.classes)),
        "images": int(layout.split_files(split)),
        "classes": int(layout.num_classes),
    }


def _shard_split(layout: Any, split: str) -> dict[str, Any]:
    facts = layout.describe(split)  # from the manifest: source, digest, counts
    return {
        # The splits share one source (the manifest's folder): the split tells them apart.
        "part": split,
        "source": facts["source"],
        "digest": facts["digest"][:DIGEST_CHARS],
        "images": int(facts["images"]),
        "classes": int(facts["classes"]),
    }


#: `layout.reader` (the kind of prepared data set) -> the facts of one of its splits.
_DESCRIBERS = {"file": _folder_split, "webdataset": _shard_split}


def describe_splits(layout: Any, source: Any) -> dict[str, dict[str, Any]]:
    """Name, source URI and type, digest, image and class counts of each split of `layout` (a
    `DatasetLayout` or `ShardLayout`) prepared from `source` (the spec's `data.source`)."""
    base = data_name(source)
    describe = _DESCRIBERS[getattr(layout, "reader", "file")]
    described = {}
    for split in CONTEXTS:
        facts = describe(layout, split)
        uri = facts["source"]
        described[split] = {
            "name": f"{base}/{facts.pop('part')}",
            "source_type": uri.split("://", 1)[0] if "://" in uri else "local",
            **facts,
        }
    return described


def log_datasets(client: Any, run_id: str, described: dict[str, dict[str, Any]]) -> None:
    """Log `describe_splits` output as the run's dataset inputs, each tagged with its context.
    Logging the same dataset again (a resumed run) adds nothing: MLflow keeps one input per
    dataset and run."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    inputs = []
    for split, facts in described.items():
        dataset = Dataset(
            name=facts["name"],
            digest=facts["digest"],
            source_type=facts["source_type"],
            source=json.dumps({"uri": facts["source"]}),
            profile=json.dumps({"num_images": facts["images"], "num_classes": facts["classes"]}),
        )
        context = InputTag(MLFLOW_DATASET_CONTEXT, CONTEXTS.get(split, split))
        inputs.append(DatasetInput(dataset, tags=[context]))
    client.log_inputs(run_id, datasets=inputs)
