"""Where a worker sits (its ranks, its device, its DDP wrapper) and the collectives that are
no-ops in a single process."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

ModelWrapper = Callable[[nn.Module], nn.Module]


@dataclass(frozen=True)
class Placement:
    """Where this worker sits: its ranks, its device, and how to wrap the model for DDP."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # Under Ray this is `ray.train.torch.prepare_model`; None means plain DDP when world > 1.
    wrap_model: ModelWrapper | None = None

    @property
    def distributed(self) -> bool:
        """Whether gradients are averaged over several processes."""
        return self.world_size > 1

    @classmethod
    def from_process_group(cls, use_gpu: bool = False) -> Placement:
        """The placement of this process in the initialised default process group (or a
        single-process placement when there is none)."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        rank, world = dist.get_rank(), dist.get_world_size()
        local = rank % max(1, torch.cuda.device_count()) if use_gpu else 0
        device = torch.device("cuda", local) if use_gpu else torch.device("cpu")
        return cls(rank=rank, world_size=world, local_rank=local, device=device)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's random."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def all_reduce(tensor: torch.Tensor, op: dist.ReduceOp.RedOpType) -> torch.Tensor:
    """`tensor` reduced over the ranks in place (unchanged without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=op)
    return tensor
