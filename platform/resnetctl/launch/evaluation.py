"""`resnetctl eval` as a Ray job: the validation data sharded over workers, counts summed.

Like `submit`, it runs on an embedded local Ray started and stopped here (`launch.embedded`),
or joins the cluster at `--address`/RAY_ADDRESS, waiting for room for its workers as a training
job does (`launch.capacity`). Each worker takes one GPU when the cluster has GPUs (DALI then
decodes with nvJPEG), else `cpus_per_worker` CPUs, evaluates one shard of the data (DALI's
readers give every image to exactly one shard) and returns its `Counts`: images, top-1 and
top-5 hits and the summed loss. The driver adds them up, protocol by protocol.

Plain Ray actors, not Ray Train's `TorchTrainer`, because the job only reads:
- There is nothing to synchronise while it runs. The only collective is one sum of four numbers
  per worker and protocol, which the driver does exactly (integers, float64) as the results
  come back; a process group would add start-up and nothing else.
- A TorchTrainer run needs run storage every node can reach (a local `storage_path` fails on
  several nodes: /work/shared/verified.md) and starts a controller and a worker group, about
  30 s on this machine before the first step: longer than evaluating the digits.
- An actor keeps the network and the data layout between protocols (loaded once per worker).
  Nothing is worth resuming mid-shard: a failed worker fails the job (exit 1), a rerun repeats
  it.

Workers report how many images they have done through a Ray queue on the driver's node (as
the training workers do), for the progress bar.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnetctl.spec import JobSpec

if TYPE_CHECKING:  # torch: imported where the job runs, not where the CLI parses options
    from resnetctl.inference.evaluate import ProtocolResult

#: How often a worker reports its progress (seconds).
REPORT_EVERY_S = 0.5

Progress = Callable[[str, int], None]  # (protocol, images done over all workers)


class EvalLaunchError(RuntimeError):
    """The job could not start: no room for its workers, or no cluster to join."""


class EvalFailed(RuntimeError):
    """A worker failed; the message is its error."""


@dataclass(frozen=True)
class EvalJob:
    """What every worker needs: the network (a module Ray ships, or an MLflow model URI each
    worker loads), the spec (data and pipeline), the data, the label mapping and the batch."""

    spec: JobSpec
    protocols: tuple[str, ...]
    mapping: tuple[int, ...]
    batch_size: int
    data_path: str | None = None
    model: Any = None
    model_uri: str | None = None
    tracking_uri: str | None = None
    #: The user's --allow-pickle, so that a worker loads what the driver was allowed to.
    allow_pickle: bool = False


@dataclass
class EvalOutcome:
    """The results, and how the job ran."""

    results: list[ProtocolResult]
    workers: int
    device: str
    startup_seconds: float
    nodes: int = 1  # the Ray nodes the workers ran on
    #: Wall seconds of each protocol, from its start on every worker to the last one's end.
    seconds: dict[str, float] = field(default_factory=dict)
    #: CPU seconds of each protocol, summed over the workers' processes (DALI's threads too):
    #: what it costs whatever else runs on the machine.
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def images_per_second(self, protocol: str) -> float:
        """Images of `protocol` over its wall time (all workers)."""
        result = next(r for r in self.results if r.protocol == protocol)
        seconds = self.seconds.get(protocol, 0.0)
        return result.images / seconds if seconds > 0 else math.nan


def absolute_store(uri: str | None) -> str | None:
    """A relative sqlite store made absolute: a Ray worker's working directory is not ours."""
    prefix = "sqlite:///"
    if uri and uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def default_workers(address: str | None, spec: JobSpec, cpus_per_worker: float) -> int:
    """Without `--workers`: one per GPU or per `cpus_per_worker` CPUs of this machine for an
    embedded Ray; on a cluster, the workers the job trained with."""
    if address:
        return spec.resources.max_workers
    from resnetctl.host import usable_cpus

    gpus = _local_gpus()
    return gpus if gpus else max(1, int(usable_cpus() // cpus_per_worker))


def run_eval(
    job: EvalJob,
    *,
    images: int,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 1.0,
    progress: Progress | None = None,
    stage: Callable[[str], None] | None = None,
) -> EvalOutcome:
    """Evaluate `job` on Ray: an embedded local Ray when `address` is None, else the cluster
    there. `images` is the size of the validation data (no worker gets an empty shard).
    `stage(text)` hears what the start-up is doing; `progress` how many images are done.

    Raises EvalLaunchError when the workers cannot be placed, EvalFailed when a worker fails.
    """
    from resnetctl.inference.evaluate import result
    from resnetctl.launch import embedded
    from resnetctl.launch.capacity import CapacityError, autoscaler_request, wait_for_capacity
    from resnetctl.spec.runtime import ResourcesSpec

    started = time.monotonic()
    count = workers or default_workers(address, job.spec, cpus_per_worker)
    count = max(1, min(count, images))
    say = stage or (lambda _text: None)
    say(f"joining the Ray cluster at {address}" if address else "starting an embedded Ray")
    owns = embedded.ensure_ray(address, env_vars=embedded.worker_env())
    actors: list[Any] = []
    try:
        gpus = _cluster_gpus() >= 1
        resources = ResourcesSpec(
            workers=count,
            use_gpu=gpus,
            cpus_per_worker=cpus_per_worker,
            gpus_per_worker=1.0,
            placement_timeout_s=job.spec.resources.placement_timeout_s,
        )
        try:
            wait_for_capacity(
                job.spec.model_copy(update={"resources": resources}),
                timeout=0 if owns else None,
                request=None if owns else autoscaler_request,
            )
        except CapacityError as exc:
            raise EvalLaunchError(f"{exc} (--workers, --cpus-per-worker)") from None
        say(f"starting {count} {'GPU' if gpus else 'CPU'} worker{'s' if count > 1 else ''}")
        actors, queue = _start_workers(job, resources)
        nodes = _wait([a.ready.remote() for a in actors], queue, None, None)
        outcome = EvalOutcome(
            [],
            count,
            "gpu" if gpus else "cpu",
            startup_seconds=time.monotonic() - started,
            nodes=len(set(nodes)),
        )
        for protocol in job.protocols:
            began = time.monotonic()
            refs = [a.run.remote(protocol) for a in actors]
            shards = _wait(refs, queue, protocol, progress)
            outcome.seconds[protocol] = time.monotonic() - began
            outcome.cpu_seconds[protocol] = sum(cpu for _, cpu in shards)
            total = shards[0][0]
            for more, _ in shards[1:]:
                total = total + more
            outcome.results.append(result(protocol, total, job.spec.pipeline))
        return outcome
    finally:
        import ray

        for actor in actors:
            ray.kill(actor)
        if owns:
            embedded.stop()
        elif ray.is_initialized():
            autoscaler_request([])  # the job is over: its nodes may be scaled down


def _local_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no usable CUDA is no GPU
        return 0


def _cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))


def _start_workers(job: EvalJob, resources: Any) -> tuple[list[Any], Any]:
    import ray

    from resnetctl.launch.progress import progress_queue

    queue = progress_queue(maxsize=1024)
    shipped = ray.put(job)  # once, not once per worker
    worker = ray.remote(EvalWorker)
    actors = [
        worker.options(
            num_cpus=resources.cpus_per_worker,
            num_gpus=resources.gpus_per_worker if resources.use_gpu else 0,
            # One shard per node where the nodes allow: each reads its own files.
            scheduling_strategy="SPREAD",
        ).remote(shipped, rank, resources.max_workers, queue)
        for rank in range(resources.max_workers)
    ]
    return actors, queue


def _wait(
    refs: list[Any],
    queue: Any,
    protocol: str | None,
    progress: Progress | None,
) -> list[Any]:
    """The results of `refs` (one per worker), feeding `progress` meanwhile."""
    import ray

    done: dict[int, int] = {}
    pending = list(refs)
    try:
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.25)
            if protocol is not None and progress is not None:
                _drain(queue, protocol, done)
                progress(protocol, sum(done.values()))
        return ray.get(refs)
    except ray.exceptions.RayError as exc:
        raise EvalFailed(_reason(exc)) from None


def _drain(queue: Any, protocol: str, done: dict[int, int]) -> None:
    while True:
        try:
            events = queue.get_nowait_batch(max(1, queue.qsize()))
        except Exception:  # empty, or the queue's actor is gone with the job
            return
        if not events:
            return
        for event in events:
            if event.get("protocol") == protocol:
                done[event["rank"]] = max(done.get(event["rank"], 0), int(event["done"]))


def _reason(exc: BaseException) -> str:
    """The worker's own error, not Ray's wrapping of it."""
    cause = getattr(exc, "cause", None) or exc
    lines = str(cause).strip().splitlines()
    if isinstance(cause, EvalFailed):
        return lines[-1] if lines else "a worker failed"
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}"


class EvalWorker:
    """One Ray actor: the network on its device and one shard of the data, for every protocol."""

    def __init__(self, job: EvalJob, rank: int, world: int, queue: Any) -> None:
        import ray
        import torch

        from resnetctl.data import resolve_device
        from resnetctl.inference.evaluate import Shard, eval_layout

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
        torch.set_num_threads(max(1, int(cpus)))
        gpu = bool(ray.get_gpu_ids()) and torch.cuda.is_available()
        dali = resolve_device(job.spec.data.device, gpu) if gpu else "cpu"
        self.shard = Shard(rank, world, dali, 0 if dali == "gpu" else None)
        self.device = torch.device("cuda", 0) if gpu else torch.device("cpu")
        self.model = _on_device(_network(job), self.device)
        self.job = job
        self.queue = queue
        self.layout = eval_layout(job.spec, Path(job.data_path) if job.data_path else None)
        self.mapping = torch.tensor(job.mapping)

    def ready(self) -> str:
        """The id of this worker's node, once the network and the data are in place."""
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def run(self, protocol: str) -> tuple[Any, float]:
        """The `Counts` of `protocol` on this worker's shard, and the CPU seconds they took."""
        from resnetctl.inference.evaluate import evaluate_shard

        cpu = time.process_time()
        done = 0
        last = 0.0

        def on_images(n: int) -> None:
            nonlocal done, last
            done += n
            now = time.monotonic()
            if now - last >= REPORT_EVERY_S:
                last = now
                self._report(protocol, done)

        try:
            counts = evaluate_shard(
                self.model,
                self.job.spec,
                self.layout,
                self.mapping,
                protocol,
                batch_size=self.job.batch_size,
                shard=self.shard,
                on_images=on_images,
            )
        except (RuntimeError, AssertionError) as exc:
            raise EvalFailed(_refused(self.job, protocol, exc)) from None
        self._report(protocol, done)
        return counts, time.process_time() - cpu

    def _report(self, protocol: str, done: int) -> None:
        event = {"protocol": protocol, "rank": self.shard.index, "done": done}
        try:
            self.queue.put_nowait(event)
        except Exception:  # noqa: BLE001 - a full queue only delays the bar
            pass


def _network(job: EvalJob) -> Any:
    if job.model is not None:
        return job.model
    from resnetctl.inference.source import load_model

    assert job.model_uri is not None
    return load_model(
        job.model_uri, tracking_uri=job.tracking_uri, allow_pickle=job.allow_pickle
    ).model


def _on_device(model: Any, device: Any) -> Callable[[Any], Any]:
    """The network on `device`, taking inputs wherever DALI left them."""
    if device.type != "cpu":
        model = model.to(device)

    def forward(images: Any) -> Any:
        return model(images.to(device, non_blocking=True))

    return forward


def _refused(job: EvalJob, protocol: str, exc: BaseException) -> str:
    """A network that refuses an input size says which, and what to evaluate instead."""
    text = str(exc).strip().splitlines()
    message = f"{protocol}: {type(exc).__name__}: {text[0] if text else ''}"
    if job.model_uri and ("Guard failed" in message or "to be equal to" in message):
        message += (
            f"; the exported program of {job.model_uri} does not take this image size (a model "
            "logged before resnetctl exported dynamic heights and widths takes its training "
            "crop only): evaluate the run's checkpoint instead (resnetctl eval RUN)"
        )
    return message


def pinned_model_uri(target: str, tracking_uri: str) -> str:
    """`models:/NAME@alias` as the logged model it names now (`models:/m-...`), so that every
    worker loads the model the driver checked even if the alias moves meanwhile."""
    import mlflow
    from mlflow.exceptions import MlflowException

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        info = mlflow.models.get_model_info(target)
    except (MlflowException, OSError):
        return target
    finally:
        mlflow.set_tracking_uri(previous)
    model_id = getattr(info, "model_id", None)
    return f"models:/{model_id}" if model_id else target
