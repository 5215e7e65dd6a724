"""Thin wrappers over Ray's cluster launcher (`ray up/down/exec/get-head-ip`) and, for KubeRay
manifests, `kubectl`: the commands as argument lists (never through a shell), and the checks
that turn a missing cloud SDK, CLI or credential into one clear sentence before anything runs.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from resnetctl.cluster.config import ClusterConfig
from resnetctl.cluster.placeholders import unfilled

# What Ray's node providers import on the machine that runs `ray up` (Ray does not depend on
# them); the pip package to install for each.
PROVIDER_SDKS = {
    "aws": (("boto3", "boto3"),),
    "gcp": (("googleapiclient", "google-api-python-client"), ("google.auth", "google-auth")),
}
LOCAL_ADDRESS = "127.0.0.1:6379"


@dataclass(frozen=True)
class Command:
    """One command to run: the argument list and extra environment."""

    args: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        prefix = " ".join(f"{k}={v}" for k, v in self.env.items())
        return (prefix + " " if prefix else "") + " ".join(_quote(a) for a in self.args)


class LauncherError(RuntimeError):
    """A cluster command cannot run here; the message says what to install or configure."""


def ray_executable() -> str:
    """The `ray` CLI of this Python environment (falls back to PATH)."""
    beside = Path(sys.executable).with_name("ray")
    if beside.exists():
        return str(beside)
    found = shutil.which("ray")
    if found is None:
        raise LauncherError("the `ray` command is not installed: pip install 'ray[default]'")
    return found


def up_commands(config: ClusterConfig) -> list[Command]:
    """What starts (or updates) the cluster: `ray up -y FILE`, or `kubectl apply -f FILE`."""
    if config.kind == "kuberay":
        return [Command(["kubectl", "apply", "-f", str(config.path)])]
    if config.provider == "fake_multinode":
        raise LauncherError(
            f"{config.path} uses the fake_multinode provider, which runs inside a local head "
            "started with `ray start`, not `ray up`: RAY_FAKE_CLUSTER=1 "
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ray start --head --num-cpus=0 "
            f"--node-ip-address=127.0.0.1 --autoscaling-config={config.path} "
            "(see docs/cluster.md)"
        )
    return [Command([ray_executable(), "up", "-y", str(config.path)])]


def down_commands(config: ClusterConfig) -> list[Command]:
    """What tears the cluster down: `ray down -y FILE`, or `kubectl delete -f FILE`."""
    if config.kind == "kuberay":
        return [Command(["kubectl", "delete", "-f", str(config.path)])]
    if config.provider == "fake_multinode":
        raise LauncherError(
            f"{config.path} is a local fake cluster: stop the `ray start --head` you started "
            "(Ctrl-C if it runs with --block); its autoscaler ends the fake nodes"
        )
    return [Command([ray_executable(), "down", "-y", str(config.path)])]


def status_commands(config: ClusterConfig, env: Mapping[str, str] | None = None) -> list[Command]:
    """What shows the cluster: head IP and `ray status` on the head, or the RayCluster object."""
    env = os.environ if env is None else env
    if config.kind == "kuberay":
        return [Command(["kubectl", "get", "raycluster", config.name, "-o", "wide"])]
    ray = ray_executable()
    auth = {"RAY_AUTH_MODE": env.get("RAY_AUTH_MODE", "token")}
    if config.provider == "fake_multinode":
        address = env.get("RAY_ADDRESS", LOCAL_ADDRESS)
        return [Command([ray, "status", "--address", address], auth)]
    return [
        Command([ray, "get-head-ip", str(config.path)]),
        # `ray status` runs on the head, where the token sits; the launcher's SSH carries it.
        Command([ray, "exec", str(config.path), "RAY_AUTH_MODE=token ray status"]),
    ]


def preflight(config: ClusterConfig, action: str, env: Mapping[str, str] | None = None) -> None:
    """Raise `LauncherError` if `action` (up, down, status) cannot work from this machine:
    a missing cloud SDK or CLI, no credentials, no kubectl context, or a missing file mount."""
    env = os.environ if env is None else env
    provider = config.provider
    if action == "up":
        _check_placeholders(config)
    if config.kind == "kuberay":
        kubectl = shutil.which("kubectl", path=env.get("PATH"))
        if kubectl is None:
            raise LauncherError(
                "kubectl is not installed: install it and point it at the "
                "Kubernetes cluster that runs the KubeRay operator"
            )
        probe = subprocess.run(
            [kubectl, "config", "current-context"],
            capture_output=True,
            text=True,
            env=dict(env),
            timeout=30,
            check=False,
        )
        if probe.returncode != 0:
            raise LauncherError(
                "kubectl has no current context (no kubeconfig): run e.g. `gcloud container "
                "clusters get-credentials NAME` or `aws eks update-kubeconfig --name NAME`, "
                f"then retry ({probe.stderr.strip() or 'kubectl config current-context failed'})"
            )
        return
    for module, package in PROVIDER_SDKS.get(provider, ()):
        if not _installed(module):
            raise LauncherError(
                f"`ray {action}` on {provider} needs the {package} package on this machine: "
                f"pip install {package}"
            )
    if provider == "aws":
        _check_aws_credentials(env)
    elif provider == "gcp":
        _check_gcp_credentials(env)
    if action == "up":
        _check_file_mounts(config)


def run(command: Command, capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run one command (argument list, no shell); output streams through unless `capture`."""
    env = {**os.environ, **command.env}
    try:
        return subprocess.run(command.args, env=env, text=True, capture_output=capture, check=False)
    except FileNotFoundError as exc:
        raise LauncherError(f"{command.args[0]} is not installed ({exc})") from None


def explain_failure(config: ClusterConfig, output: str) -> str | None:
    """A hint for well-known cloud failures in a command's output, or None."""
    text = output.lower()
    if "nocredentialserror" in text or "unable to locate credentials" in text:
        return "AWS has no credentials: run `aws configure` or set AWS_PROFILE"
    if "defaultcredentialserror" in text or "could not automatically determine credentials" in text:
        return "GCP has no credentials: run `gcloud auth application-default login`"
    if "doesn't have a resource type" in text and "raycluster" in text:
        return "this Kubernetes cluster has no RayCluster type: install the KubeRay operator"
    if "head node of cluster" in text and "not found" in text:
        return f"no cluster named {config.name} is running: start it with `resnetctl cluster up`"
    return None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a missing parent package of a dotted name
        return False


def _check_aws_credentials(env: Mapping[str, str]) -> None:
    import boto3

    if boto3.Session(profile_name=env.get("AWS_PROFILE")).get_credentials() is None:
        raise LauncherError(
            "no AWS credentials found: run `aws configure` (or set AWS_PROFILE, "
            "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )


def _check_gcp_credentials(env: Mapping[str, str]) -> None:
    import google.auth
    import google.auth.exceptions

    try:
        google.auth.default()
    except google.auth.exceptions.DefaultCredentialsError:
        raise LauncherError(
            "no GCP credentials found: run `gcloud auth application-default login` (or set "
            "GOOGLE_APPLICATION_CREDENTIALS to a service-account key)"
        ) from None


def _check_placeholders(config: ClusterConfig) -> None:
    message = unfilled(config)
    if message:
        raise LauncherError(message)


def _check_file_mounts(config: ClusterConfig) -> None:
    missing = []
    for remote, local in (config.raw.get("file_mounts") or {}).items():
        if not Path(os.path.expanduser(str(local))).exists():
            missing.append(f"{local} (for {remote})")
    if missing:
        hint = ""
        if any("auth_token" in m for m in missing):
            hint = "; create the Ray auth token with `ray get-auth-token --generate`"
        raise LauncherError(
            f"file_mounts name local files that do not exist: {', '.join(missing)}{hint}"
        )


def _quote(arg: str) -> str:
    return shlex.quote(arg)


__all__: Sequence[str] = (
    "Command",
    "LauncherError",
    "down_commands",
    "explain_failure",
    "preflight",
    "ray_executable",
    "run",
    "status_commands",
    "up_commands",
)
