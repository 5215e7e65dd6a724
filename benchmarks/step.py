"""ResNet-50 forward+backward throughput on this CPU: resnetctl's model against
torchvision's, measured side by side in one run, and the achieved FLOP/s against the
machine's measured fp32 matmul peak.

    .venv/bin/python benchmarks/step.py [--batch 32] [--size 224] [--rounds 3]

Prints images/s of each model (median over interleaved rounds), their ratio, and the share of
the matmul peak the training step reaches. Shared, noisy machines: only the ratios mean much.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from resnetctl.models import count_macs, create_model


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an n x n matmul."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def step_seconds(
    model: torch.nn.Module, batch: torch.Tensor, labels: torch.Tensor, steps: int
) -> float:
    """Seconds per SGD training step (forward, loss, backward, update)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(batch).float(), labels).backward()  # fp32 loss under autocast too
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="Timed steps per round and model.")
    args = parser.parse_args()
    torch.manual_seed(0)
    batch = torch.randn(args.batch, 3, args.size, args.size)
    labels = torch.randint(0, 1000, (args.batch,))
    models = {
        "torchvision resnet50 (v1.5)": torchvision.models.resnet50(),
        "resnetctl resnet50 v1.5": create_model("resnet50", stride_in_1x1=False),
        "resnetctl resnet50 (paper v1)": create_model("resnet50"),
    }
    for model in models.values():  # warm-up: allocator and oneDNN kernel selection
        step_seconds(model, batch, labels, 1)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):  # interleaved so drifts in machine load hit every model alike
        for name, model in models.items():
            times[name].append(step_seconds(model, batch, labels, args.steps))
    peak = matmul_peak()
    print(
        f"threads {torch.get_num_threads()}, batch {args.batch}, {args.size}x{args.size}, "
        f"matmul peak {peak / 1e9:.1f} GFLOP/s"
    )
    ips = {}
    for name, model in models.items():
        seconds = statistics.median(times[name])
        ips[name] = args.batch / seconds
        flops = 3 * 2 * count_macs(model, args.size) * args.batch / seconds
        print(
            f"{name:32s} {ips[name]:7.2f} img/s  {flops / 1e9:6.1f} GFLOP/s "
            f"({flops / peak:5.1%} of peak)"
        )
    ratio = ips["resnetctl resnet50 v1.5"] / ips["torchvision resnet50 (v1.5)"]
    print(f"ratio resnetctl v1.5 / torchvision: {ratio:.3f} (target >= 0.98)")
    print(
        f"ratio resnetctl paper v1 / torchvision: "
        f"{ips['resnetctl resnet50 (paper v1)'] / ips['torchvision resnet50 (v1.5)']:.3f}"
    )


if __name__ == "__main__":
    main()
