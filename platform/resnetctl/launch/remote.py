"""Jobs on a running Ray cluster through the Ray Jobs API: submit, follow, stop, list.

The job's entrypoint is `python -m resnetctl submit job.yaml` on the cluster: the same local
launcher, joining the cluster it runs on. The resolved spec travels in the job's working
directory and resnetctl itself as a `py_modules` entry, so the cluster needs the libraries
(torch, ray, DALI, mlflow) but not this checkout.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnetctl.launch import auth
from resnetctl.spec import JobSpec, dump_spec
from resnetctl.storage import CLUSTER_DEFAULT_STORAGE, new_run_name
from resnetctl.tracking.labels import submitter_env
from resnetctl.tracking.store import is_local_store, resolve_tracking_uri
from resnetctl.train.upload import SLOW_UPLOAD_ENV

#: How long Ray's job supervisor waits after a stop's SIGTERM before it SIGKILLs the job.
STOP_WAIT_ENV = "RAY_JOB_STOP_WAIT_TIME_S"
STOP_WAIT_S = 180

JOB_FILE = "job.yaml"
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
# Default checkpoint storage on the cluster; multi-node clusters need a bucket or a path every
# node shares (NFS): pass --storage, or give the nodes RESNETCTL_STORAGE (cluster/*.yaml do).
REMOTE_STORAGE = CLUSTER_DEFAULT_STORAGE
_DRIVER_COMMAND = f"python -m resnetctl submit {JOB_FILE} --json"


def entrypoint(storage: str | None) -> tuple[str, dict[str, str]]:
    """The Ray job's shell command and the environment variables it needs for `storage`.

    `--storage` wins. Without it, the storage the cluster's nodes name in their own environment
    (the bucket a cluster config sets once) wins over the cluster default: the job's shell
    (Ray Jobs runs an entrypoint with `sh -c`) fills in the default only where the variable is
    unset, so the client's environment never hides the cluster's choice.
    """
    if storage:
        return _DRIVER_COMMAND, {"RESNETCTL_STORAGE": storage}
    default = REMOTE_STORAGE.replace("~", "$HOME", 1)
    return f'RESNETCTL_STORAGE="${{RESNETCTL_STORAGE:-{default}}}" {_DRIVER_COMMAND}', {}


class RemoteError(RuntimeError):
    """The cluster or the job cannot be reached or used; the message says which and why."""


@dataclass(frozen=True)
class JobInfo:
    """One job as `resnetctl list` and `status` show it."""

    job_id: str
    spec_name: str
    state: str
    start_time: float | None
    end_time: float | None
    mlflow_uri: str
    message: str

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (or to now while running)."""
        if self.start_time is None:
            return None
        end = self.end_time if self.end_time is not None else time.time()
        return max(0.0, end - self.start_time)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "job_id": self.job_id,
            "spec": self.spec_name,
            "state": self.state,
            "start_time": self.start_time,
            "duration_s": self.duration,
            "mlflow_uri": self.mlflow_uri,
            "message": self.message,
        }


def client(address: str) -> Any:
    """A `JobSubmissionClient` for `address`, sending this machine's Ray auth token if any.

    Raises `RemoteError` naming the address when nothing answers there, and saying how to get
    the token when the cluster refuses this machine for the lack of (the right) one.
    """
    from ray.job_submission import JobSubmissionClient

    # Passed explicitly: Ray's client sends the token only if RAY_AUTH_MODE=token was set
    # before Ray was imported.
    headers = auth.http_headers()
    try:
        return JobSubmissionClient(address, headers=headers or None)
    except Exception as exc:  # ConnectionError, requests' errors, version checks
        text = _first_line(exc)
        if auth.is_auth_failure(text):
            message = auth.wrong_token_message if headers else auth.missing_token_message
            raise RemoteError(message(address)) from None
        raise RemoteError(f"cannot reach the Ray Jobs API at {address}: {text}") from None


def check_cluster_tracking(spec: JobSpec) -> str:
    """The tracking URI the cluster will use; refuses stores only this machine can reach."""
    uri = resolve_tracking_uri(spec)
    if is_local_store(uri):
        raise RemoteError(
            f"tracking: {uri} is a local store that the cluster's workers cannot reach; run an "
            "MLflow server beside the cluster (see docs/cluster.md) and set tracking.uri "
            "(or MLFLOW_TRACKING_URI) to its http:// address"
        )
    return uri


def submit(
    spec: JobSpec,
    address: str,
    *,
    storage: str | None = None,
    spec_file: str | None = None,
) -> str:
    """Submit `spec` as a Ray job; returns its submission id (also the run name)."""
    uri = check_cluster_tracking(spec)
    jobs = client(address)
    submission_id = new_run_name(spec.name)
    resolved = spec.model_copy(deep=True)
    resolved.tracking.uri = uri
    package = Path(__file__).resolve().parents[1]
    # The job's working directory is deleted with the job: checkpoints must live elsewhere.
    command, env_vars = entrypoint(storage)
    env_vars.update({"RESNETCTL_RUN_NAME": submission_id, "PYTHONUNBUFFERED": "1"})
    env_vars.update(submitter_env(spec_file))  # MLflow's Source and Created by: this machine's
    # `resnetctl stop` (Ray Jobs' stop) sends the job SIGTERM, a notice: the workers checkpoint
    # at their next step, then the job ends. Ray's job supervisor, which reads this from the
    # job's environment, would SIGKILL it after 3 s, too soon for a checkpoint upload.
    env_vars[STOP_WAIT_ENV] = os.environ.get(STOP_WAIT_ENV, str(STOP_WAIT_S))
    # The fault-injection switch of train.upload travels too, so that a test (or a user trying
    # the guarantee) can slow a cluster job's checkpoint uploads; unset, nothing changes.
    for name in ("RESNETCTL_CACHE", "RAY_AUTH_MODE", SLOW_UPLOAD_ENV):
        if name in os.environ:
            env_vars[name] = os.environ[name]
    # `checkpoint.resume_from` travels inside the spec, so --resume needs nothing here.
    with tempfile.TemporaryDirectory(prefix="resnetctl-job-") as workdir:
        (Path(workdir) / JOB_FILE).write_text(dump_spec(resolved), encoding="utf-8")
        try:
            return jobs.submit_job(
                entrypoint=command,
                submission_id=submission_id,
                runtime_env={
                    "working_dir": workdir,
                    "py_modules": [str(package)],
                    "env_vars": env_vars,
                },
                metadata={
                    "resnetctl.spec": spec.name,
                    "resnetctl.spec_file": spec_file or "",
                    "resnetctl.mlflow_uri": uri,
                },
            )
        except Exception as exc:
            raise RemoteError(
                f"the cluster at {address} refused the job: {_first_line(exc)}"
            ) from None


def info(address: str, job_id: str) -> JobInfo:
    """The state of job `job_id`; raises `RemoteError` if the cluster has no such job."""
    jobs = client(address)
    try:
        details = jobs.get_job_info(job_id)
    except Exception as exc:
        raise RemoteError(f"no job {job_id!r} on {address}: {_first_line(exc)}") from None
    return _job_info(details)


def list_jobs(address: str) -> list[JobInfo]:
    """Every resnetctl job on the cluster, newest first."""
    jobs = client(address)
    found = [_job_info(d) for d in jobs.list_jobs() if "resnetctl.spec" in (d.metadata or {})]
    return sorted(found, key=lambda j: j.start_time or 0.0, reverse=True)


def stop(address: str, job_id: str, wait_s: float = 60.0) -> JobInfo:
    """Stop a running job and wait until the cluster says it ended."""
    jobs = client(address)
    info(address, job_id)  # a clear error for an unknown id
    jobs.stop_job(job_id)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        current = info(address, job_id)
        if current.state in TERMINAL:
            return current
        time.sleep(1.0)
    return info(address, job_id)


def logs(address: str, job_id: str, *, follow: bool = False, out: Any = None) -> str | None:
    """Print the job's logs (all of them, or following until the job ends)."""
    jobs = client(address)
    info(address, job_id)
    out = out or sys.stdout
    if not follow:
        text = jobs.get_job_logs(job_id)
        out.write(text)
        return text

    async def tail() -> None:
        async for chunk in jobs.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    asyncio.run(tail())
    return None


def log_text(address: str, job_id: str) -> str:
    """The job's logs so far (its driver's output)."""
    try:
        return str(client(address).get_job_logs(job_id))
    except RemoteError:
        raise
    except Exception as exc:
        raise RemoteError(f"no logs of job {job_id!r} on {address}: {_first_line(exc)}") from None


#: The keys every run summary has (`RunSummary.as_dict`).
_SUMMARY_KEYS = frozenset({"succeeded", "run_name", "mlflow_run_id", "metrics"})


def summary_in(text: str) -> dict[str, Any] | None:
    """The last run summary printed in `text`, a job's logs (a JSON object that starts a line:
    the entrypoint is `submit --json`, which prints the summary a local `submit --json` prints),
    or None when the job ended before it had one."""
    decoder = json.JSONDecoder()
    for start in reversed([m.start() for m in re.finditer(r"^\{", text, re.MULTILINE)]):
        try:
            found, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(found, dict) and _SUMMARY_KEYS <= found.keys():
            return found
    return None


_MISSING_MODULE = re.compile(
    r"(?:ModuleNotFoundError: No module named|has no module named) '?([A-Za-z_][\w.]*)'?"
)


def missing_dependency(text: str) -> str | None:
    """One line saying what to do when `text` (a job's logs or message) shows that the cluster's
    `python` lacks one of resnetctl's dependencies, else None."""
    found = _MISSING_MODULE.search(text)
    if found is None:
        return None
    return (
        f"the cluster's `python` has no module {found.group(1)!r}, which resnetctl needs: Ray "
        "runs a job with the `python` on the head node's PATH, so start the head (`ray start "
        "--head ...`) from a shell where resnetctl's venv is active (`. .venv/bin/activate`), "
        "or install resnetctl and its dependencies into that Python"
    )


def _job_info(details: Any) -> JobInfo:
    metadata = details.metadata or {}
    return JobInfo(
        job_id=details.submission_id or details.job_id or "",
        spec_name=metadata.get("resnetctl.spec", ""),
        state=str(getattr(details.status, "value", details.status)),
        start_time=details.start_time / 1000 if details.start_time else None,
        end_time=details.end_time / 1000 if details.end_time else None,
        mlflow_uri=metadata.get("resnetctl.mlflow_uri", ""),
        message=(details.message or "").strip().splitlines()[-1] if details.message else "",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
