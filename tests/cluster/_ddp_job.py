"""The driver the autoscaling test submits: a Ray Train `TorchTrainer` with 2 CPU workers, each
doing a few DDP steps of a tiny model over gloo. Run as `python _ddp_job.py STORAGE_DIR`; prints
`{"ok": true}` and leaves `rank-N.json` (world size, node id) in STORAGE_DIR."""

from __future__ import annotations

import json
import sys
from typing import Any


def train_loop(config: dict[str, Any]) -> None:
    """A few real DDP steps: the gradient allreduce crosses the two fake nodes."""
    import ray
    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train.torch import prepare_model

    torch.manual_seed(0)
    model = prepare_model(torch.nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(config["steps"]):
        optimizer.zero_grad()
        loss = model(torch.randn(16, 8)).pow(2).mean()
        loss.backward()
        optimizer.step()
    total = torch.ones(1)
    dist.all_reduce(total)
    rank = ray.train.get_context().get_world_rank()
    record = {
        "rank": rank,
        "world_size": int(total.item()),
        "loss": float(loss.item()),
        "node": ray.get_runtime_context().get_node_id(),
    }
    # Result.metrics keeps only metrics reported with a checkpoint: write what we check to files.
    with open(f"{config['out']}/rank-{rank}.json", "w") as f:
        json.dump(record, f)
    ray.train.report(record)


def main(storage: str) -> None:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    ray.init(log_to_driver=False)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"steps": 5, "out": storage},
        scaling_config=ScalingConfig(num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="autoscale", storage_path=storage),
    )
    result = trainer.fit()
    print(json.dumps({"ok": result.error is None}), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
