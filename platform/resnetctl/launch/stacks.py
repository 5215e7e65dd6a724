"""Reading a worker's Python stack, and ending it, on the node it runs on.

Kept apart from the hang diagnosis so that the Ray task running these on a node imports
nothing heavy.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: Seconds to wait for a node to read a process's stack.
STACK_TIMEOUT_S = 30.0


def read_stack(pid: int) -> str:
    """The Python stack of process `pid` on this machine, read by py-spy from outside.

    py-spy's default mode stops the process with ptrace while it reads, which fails on a
    process that is already stopped ("Failed to suspend process"); `--nonblocking` only reads
    its memory, which a stopped process does not change. A running process is read in the
    default mode, for a consistent stack.

    Reading another process needs ptrace rights: as Ray's dashboard does, a user who is not
    root runs py-spy through passwordless sudo where there is one (Ray's images have it).
    """
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).is_file():
        return "py-spy is not installed on this node (it comes with ray[default])"
    command = [spy, "dump", "--pid", str(pid)]
    if os.geteuid() != 0 and _passwordless_sudo():
        command = ["sudo", "-n", *command]
    stopped = _process_state(pid) in ("T", "t")
    tried: list[str] = []
    for options in ([] if stopped else [[]]) + [["--nonblocking"]]:
        try:
            done = subprocess.run(
                [*command, *options],
                capture_output=True,
                text=True,
                timeout=STACK_TIMEOUT_S - 5,
            )
        except subprocess.TimeoutExpired:
            tried.append(f"py-spy dump {' '.join(options)}: no answer")
            continue
        if done.returncode == 0:
            return done.stdout.rstrip()
        tried.append(_first_error(done.stderr or done.stdout))
    hint = (
        " (py-spy needs to ptrace the process: root, CAP_SYS_PTRACE in a container, or "
        "kernel.yama.ptrace_scope=0)"
        if any("ermission" in text for text in tried)
        else ""
    )
    return f"py-spy could not read process {pid}: {'; '.join(tried)}{hint}"


def _passwordless_sudo() -> bool:
    if shutil.which("sudo") is None:
        return False
    try:
        done = subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _process_state(pid: int) -> str | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split()[1]
    except OSError:
        pass
    return None


def _first_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error")]
    return (errors or lines or ["py-spy failed"])[0]


def end_process(pid: int, title: str | None = None) -> str:
    """SIGKILL process `pid` on this machine, if its command line contains `title` (when
    given); what happened."""
    if title is not None:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return "already gone"
        if title not in command:
            return f"not ended: process {pid} is no longer {title!r}"
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "already gone"
    except OSError as exc:
        return f"not ended: {exc}"
    return "ended"


def on_nodes(calls: Sequence[tuple[str, Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
    """Run every `function(*args)` on its Ray node (`(node_id, function, args)`, no CPU
    needed), all at once; their results in order, or for a call that failed or did not answer
    within `STACK_TIMEOUT_S` (a frozen node), a sentence saying why."""
    if not calls:
        return []
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = {function: ray.remote(function) for _, function, _ in calls}
    refs = [
        remote[function]
        .options(
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            max_retries=0,
        )
        .remote(*args)
        for node_id, function, args in calls
    ]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=STACK_TIMEOUT_S)
    done = set(ready)
    results: list[Any] = []
    for (node_id, _, _), ref in zip(calls, refs, strict=True):
        if ref not in done:
            ray.cancel(ref, force=True)
            results.append(f"node {node_id[:8]} did not answer within {STACK_TIMEOUT_S:.0f} s")
            continue
        try:
            results.append(ray.get(ref))
        except Exception as exc:  # noqa: BLE001 - a node that fails is part of the story
            text = f"node {node_id[:8]} failed: {type(exc).__name__}: {exc}"
            results.append(text.splitlines()[0])
    return results
