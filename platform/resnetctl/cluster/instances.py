"""What cloud machine types hold, so a config's declared Ray resources can be checked offline.

Only types a ResNet job would plausibly use are listed; an unknown type is not an error, it is
just not cross-checked. Figures are the providers' published specifications (vCPUs, GPUs per
machine)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Machine:
    """One machine type: vCPUs, GPUs and the GPU model."""

    cpus: int
    gpus: int = 0
    accelerator: str | None = None


def _family(gpu: str, sizes: dict[str, tuple[int, int]]) -> dict[str, Machine]:
    return {
        name: Machine(cpus, gpus, gpu if gpus else None) for name, (cpus, gpus) in sizes.items()
    }


# fmt: off
AWS: dict[str, Machine] = {
    "p4d.24xlarge": Machine(96, 8, "A100"),
    "p4de.24xlarge": Machine(96, 8, "A100-80GB"),
    "p5.48xlarge": Machine(192, 8, "H100"),
    "p5e.48xlarge": Machine(192, 8, "H200"),
    "p5en.48xlarge": Machine(192, 8, "H200"),
    "p3.2xlarge": Machine(8, 1, "V100"),
    "p3.8xlarge": Machine(32, 4, "V100"),
    "p3.16xlarge": Machine(64, 8, "V100"),
    "p3dn.24xlarge": Machine(96, 8, "V100"),
    **_family("A10G", {
        "g5.xlarge": (4, 1), "g5.2xlarge": (8, 1), "g5.4xlarge": (16, 1), "g5.8xlarge": (32, 1),
        "g5.12xlarge": (48, 4), "g5.16xlarge": (64, 1), "g5.24xlarge": (96, 4),
        "g5.48xlarge": (192, 8),
    }),
    **_family("L4", {
        "g6.xlarge": (4, 1), "g6.2xlarge": (8, 1), "g6.4xlarge": (16, 1), "g6.8xlarge": (32, 1),
        "g6.12xlarge": (48, 4), "g6.16xlarge": (64, 1), "g6.24xlarge": (96, 4),
        "g6.48xlarge": (192, 8),
    }),
    **_family("T4", {
        "g4dn.xlarge": (4, 1), "g4dn.2xlarge": (8, 1), "g4dn.4xlarge": (16, 1),
        "g4dn.8xlarge": (32, 1), "g4dn.12xlarge": (48, 4), "g4dn.16xlarge": (64, 1),
        "g4dn.metal": (96, 8),
    }),
    **_family("", {
        "m5.large": (2, 0), "m5.xlarge": (4, 0), "m5.2xlarge": (8, 0), "m5.4xlarge": (16, 0),
        "m5.8xlarge": (32, 0), "m6i.large": (2, 0), "m6i.xlarge": (4, 0), "m6i.2xlarge": (8, 0),
        "m6i.4xlarge": (16, 0), "m6i.8xlarge": (32, 0), "c6i.8xlarge": (32, 0),
    }),
}

# GCP's accelerator-optimised types (A2, A3, G2) come with their GPUs attached; N1 machines get
# theirs from `guestAccelerators`, which the config check reads instead.
GCP: dict[str, Machine] = {
    **_family("A100", {
        "a2-highgpu-1g": (12, 1), "a2-highgpu-2g": (24, 2), "a2-highgpu-4g": (48, 4),
        "a2-highgpu-8g": (96, 8), "a2-megagpu-16g": (96, 16),
    }),
    **_family("A100-80GB", {
        "a2-ultragpu-1g": (12, 1), "a2-ultragpu-2g": (24, 2), "a2-ultragpu-4g": (48, 4),
        "a2-ultragpu-8g": (96, 8),
    }),
    **_family("H100", {"a3-highgpu-1g": (26, 1), "a3-highgpu-2g": (52, 2),
                       "a3-highgpu-4g": (104, 4), "a3-highgpu-8g": (208, 8),
                       "a3-megagpu-8g": (208, 8)}),
    **_family("L4", {
        "g2-standard-4": (4, 1), "g2-standard-8": (8, 1), "g2-standard-12": (12, 1),
        "g2-standard-16": (16, 1), "g2-standard-24": (24, 2), "g2-standard-32": (32, 1),
        "g2-standard-48": (48, 4), "g2-standard-96": (96, 8),
    }),
    **_family("", {
        "n1-standard-4": (4, 0), "n1-standard-8": (8, 0), "n1-standard-16": (16, 0),
        "n1-standard-32": (32, 0), "n2-standard-4": (4, 0), "n2-standard-8": (8, 0),
        "n2-standard-16": (16, 0), "n2-standard-32": (32, 0), "e2-standard-8": (8, 0),
    }),
}
# fmt: on

# GCP accelerator names in `guestAccelerators[].acceleratorType`, as GPU models.
GCP_ACCELERATORS = {
    "nvidia-tesla-t4": "T4",
    "nvidia-tesla-v100": "V100",
    "nvidia-tesla-p100": "P100",
    "nvidia-tesla-a100": "A100",
    "nvidia-a100-80gb": "A100-80GB",
    "nvidia-l4": "L4",
    "nvidia-h100-80gb": "H100",
}


def machine(provider: str, node_config: dict[str, object]) -> Machine | None:
    """The machine a launcher node type asks for, if this table knows it.

    AWS names it `InstanceType`; GCP `machineType` plus optional `guestAccelerators`.
    """
    if provider == "aws":
        return AWS.get(str(node_config.get("InstanceType", "")))
    if provider == "gcp":
        name = str(node_config.get("machineType", "")).rsplit("/", 1)[-1]
        base = GCP.get(name)
        extra = node_config.get("guestAccelerators") or []
        if not isinstance(extra, list) or not extra:
            return base
        gpus, model = 0, None
        for item in extra:
            if isinstance(item, dict):
                gpus += int(item.get("acceleratorCount", 0) or 0)
                kind = str(item.get("acceleratorType", "")).rsplit("/", 1)[-1]
                model = GCP_ACCELERATORS.get(kind, kind or None)
        cpus = base.cpus if base else _n1_cpus(name)
        return Machine(cpus, (base.gpus if base else 0) + gpus, model) if cpus else None
    return None


def _n1_cpus(name: str) -> int:
    # Custom shapes like n1-standard-96 or n1-highmem-64 end in their vCPU count.
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if name.startswith(("n1-", "n2-")) and tail.isdigit() else 0
