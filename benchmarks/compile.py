"""`train.compile` on the CPU: one SGD training step of a model, eager against
`torch.compile` (TorchInductor), measured side by side in one run.

    .venv/bin/python benchmarks/compile.py [--model cifar_resnet20] [--batch 64] [--size 32]

Prints the compilation time (the first compiled steps), the median seconds per step of each
mode over interleaved rounds, and the ratio compiled / eager of the step time (below 1: compile
is faster). Shared, noisy machines: only the ratio means much.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

# The same step the model benchmark times (run as `python benchmarks/compile.py`, this folder
# is on the path).
from step import step_seconds  # noqa: E402

from resnetctl.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar_resnet20")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="Timed steps per round and mode.")
    args = parser.parse_args()
    torch.manual_seed(0)
    batch = torch.randn(args.batch, 3, args.size, args.size)
    labels = torch.randint(0, args.classes, (args.batch,))
    eager = create_model(args.model, num_classes=args.classes)
    compiled = create_model(args.model, num_classes=args.classes)
    compiled.load_state_dict(eager.state_dict())
    compiled.compile()  # what train.compile does: nn.Module.compile, in place
    start = time.perf_counter()
    # Warm-up: two steps each, the compiled ones include compiling forward and backward.
    step_seconds(compiled, batch, labels, 2)
    compile_seconds = time.perf_counter() - start
    step_seconds(eager, batch, labels, 2)
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(args.rounds):  # interleaved so drifts in machine load hit both alike
        times["eager"].append(step_seconds(eager, batch, labels, args.steps))
        times["compiled"].append(step_seconds(compiled, batch, labels, args.steps))
    eager_s, compiled_s = (statistics.median(times[k]) for k in ("eager", "compiled"))
    print(
        f"{args.model}, batch {args.batch}, {args.size}x{args.size}, threads "
        f"{torch.get_num_threads()}, torch {torch.__version__}"
    )
    print(f"compilation (first 2 compiled steps): {compile_seconds:.1f} s")
    print(f"eager     {eager_s * 1000:8.1f} ms/step  {args.batch / eager_s:8.1f} img/s")
    print(f"compiled  {compiled_s * 1000:8.1f} ms/step  {args.batch / compiled_s:8.1f} img/s")
    print(f"ratio compiled / eager step time: {compiled_s / eager_s:.3f}")
    steps = compile_seconds / max(eager_s - compiled_s, 1e-9)
    if compiled_s < eager_s:
        print(f"compilation repaid after about {steps:.0f} steps")


if __name__ == "__main__":
    main()
