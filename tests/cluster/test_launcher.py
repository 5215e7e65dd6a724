"""`resnetctl cluster up|down|status`: the commands as argument lists, and clear errors for a
missing cloud SDK, CLI or credential. Nothing here reaches a cloud: SDK checks are faked where
the real ones would call a metadata server, and `ray` itself is replaced by a stub script."""

from __future__ import annotations

import sys
import types

import pytest

from resnetctl.cluster import launcher, load_config
from resnetctl.cluster.launcher import LauncherError
from tests.cluster.conftest import CLUSTER, calls, stub


def test_dry_run_prints_the_launcher_commands(cli, fake_ray) -> None:
    ray = fake_ray()
    aws = CLUSTER / "aws.yaml"
    assert cli("up", str(aws), "--dry-run").stdout.strip() == f"{ray} up -y {aws}"
    assert cli("down", str(aws), "--dry-run").stdout.strip() == f"{ray} down -y {aws}"
    status = cli("status", str(aws), "--dry-run").stdout.strip().splitlines()
    assert status == [
        f"{ray} get-head-ip {aws}",
        f"{ray} exec {aws} 'RAY_AUTH_MODE=token ray status'",
    ]
    kube = CLUSTER / "kuberay.yaml"
    assert cli("up", str(kube), "--dry-run").stdout.strip() == f"kubectl apply -f {kube}"
    assert cli("down", str(kube), "--dry-run").stdout.strip() == f"kubectl delete -f {kube}"
    assert cli("status", str(kube), "--dry-run").stdout.strip() == (
        "kubectl get raycluster resnetctl -o wide"
    )


def test_local_status_uses_the_address_and_token_mode(monkeypatch, fake_ray) -> None:
    ray = fake_ray()
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6400")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    (command,) = launcher.status_commands(load_config(CLUSTER / "local.yaml"))
    assert command.args == [str(ray), "status", "--address", "127.0.0.1:6400"]
    assert command.env == {"RAY_AUTH_MODE": "token"}


def test_the_local_fake_cluster_is_not_for_ray_up(cli) -> None:
    outcome = cli("up", str(CLUSTER / "local.yaml"), "--yes")
    assert outcome.code == 2
    assert "fake_multinode provider" in outcome.stderr and "ray start --head" in outcome.stderr


def test_up_runs_ray_up_with_an_argument_list(cli, fake_ray, tmp_path, monkeypatch) -> None:
    fake_ray()
    monkeypatch.setattr(launcher, "preflight", lambda config, action: None)
    path = CLUSTER / "gcp.yaml"
    outcome = cli("up", str(path), "--yes")
    assert outcome.code == 0, outcome.stderr
    assert calls(tmp_path, "ray") == [["up", "-y", str(path)]]
    assert cli("down", str(path), "--yes").code == 0
    assert calls(tmp_path, "ray")[-1] == ["down", "-y", str(path)]


def test_up_without_yes_refuses_when_nobody_can_answer(cli, fake_ray, tmp_path, monkeypatch):
    fake_ray()
    monkeypatch.setattr(launcher, "preflight", lambda config, action: None)
    outcome = cli("up", str(CLUSTER / "gcp.yaml"))
    assert outcome.code == 2 and "pass --yes" in outcome.stderr
    assert calls(tmp_path, "ray") == []


def test_up_refuses_placeholders(cli, fake_ray, tmp_path) -> None:
    fake_ray()
    path = CLUSTER / "aws.yaml"
    outcome = cli("up", str(path), "--yes")
    assert outcome.code == 2
    ami = [n for n, text in enumerate(path.read_text().splitlines(), 1) if "ami-REPLACE" in text]
    assert (
        f"  {path}:{ami[0]}: available_node_types.head.node_config.ImageId: still a placeholder "
        f"(ami-REPLACE-WITH-DLAMI-FOR-YOUR-REGION) (also at lines {', '.join(map(str, ami[1:]))}"
        "): put the Deep Learning Base GPU AMI id of your region"
    ) in outcome.stderr
    assert calls(tmp_path, "ray") == []


def test_status_without_the_aws_sdk_is_a_clear_error(cli, fake_ray, tmp_path, monkeypatch):
    fake_ray()
    monkeypatch.setattr(launcher, "_installed", lambda module: False)
    outcome = cli("status", str(CLUSTER / "aws.yaml"))
    assert outcome.code == 2
    assert (
        "error: `ray status` on aws needs the boto3 package on this machine: pip install boto3"
    ) in outcome.stderr
    assert calls(tmp_path, "ray") == []


def test_status_without_the_gcp_sdk_is_a_clear_error(cli, fake_ray, monkeypatch) -> None:
    fake_ray()
    monkeypatch.setattr(launcher, "_installed", lambda module: module != "googleapiclient")
    outcome = cli("status", str(CLUSTER / "gcp.yaml"))
    assert outcome.code == 2
    assert "needs the google-api-python-client package" in outcome.stderr


def test_status_without_aws_credentials_is_a_clear_error(cli, fake_ray, monkeypatch) -> None:
    fake_ray()
    # A boto3 whose credential chain finds nothing (the real one might ask EC2's metadata
    # server, which is not loopback).
    session = types.SimpleNamespace(get_credentials=lambda: None)
    monkeypatch.setitem(sys.modules, "boto3", types.SimpleNamespace(Session=lambda **_: session))
    monkeypatch.setattr(launcher, "_installed", lambda module: True)
    outcome = cli("status", str(CLUSTER / "aws.yaml"))
    assert outcome.code == 2
    assert "no AWS credentials found: run `aws configure`" in outcome.stderr


def test_status_without_gcp_credentials_is_a_clear_error(fake_ray, monkeypatch) -> None:
    import google.auth
    import google.auth.exceptions

    def no_credentials(*args, **kwargs):
        raise google.auth.exceptions.DefaultCredentialsError("none")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    monkeypatch.setattr(launcher, "_installed", lambda module: True)
    with pytest.raises(LauncherError, match="no GCP credentials found: run `gcloud auth"):
        launcher.preflight(load_config(CLUSTER / "gcp.yaml"), "status")


def test_a_failing_status_explains_missing_credentials(cli, fake_ray, monkeypatch) -> None:
    fake_ray(
        "print('botocore.exceptions.NoCredentialsError: Unable to locate credentials', "
        "file=sys.stderr); sys.exit(1)"
    )
    monkeypatch.setattr(launcher, "preflight", lambda config, action: None)
    outcome = cli("status", str(CLUSTER / "aws.yaml"))
    assert outcome.code == 1
    assert "AWS has no credentials: run `aws configure`" in outcome.stderr


def test_kuberay_needs_kubectl_and_a_context(cli, tmp_path, monkeypatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    outcome = cli("status", str(CLUSTER / "kuberay.yaml"))
    assert outcome.code == 2 and "kubectl is not installed" in outcome.stderr

    stub(
        empty, "kubectl", "print('error: current-context is not set', file=sys.stderr); sys.exit(1)"
    )
    outcome = cli("status", str(CLUSTER / "kuberay.yaml"))
    assert outcome.code == 2
    assert "kubectl has no current context (no kubeconfig)" in outcome.stderr
    assert "current-context is not set" in outcome.stderr
    assert calls(empty, "kubectl") == [["config", "current-context"]]


def test_kuberay_status_runs_kubectl_get(cli, tmp_path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub(bin_dir, "kubectl", "print('resnetctl   0   0   ready') if 'get' in sys.argv else None")
    monkeypatch.setenv("PATH", str(bin_dir))
    outcome = cli("status", str(CLUSTER / "kuberay.yaml"))
    assert outcome.code == 0, outcome.stderr
    assert "resnetctl   0   0   ready" in outcome.stdout
    assert calls(bin_dir, "kubectl")[-1] == ["get", "raycluster", "resnetctl", "-o", "wide"]


def test_missing_file_mounts_name_the_token_command(variant, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token here
    monkeypatch.chdir(tmp_path)  # and no ./dist
    config = load_config(variant("aws", lambda c: None))
    with pytest.raises(LauncherError) as info:
        launcher._check_file_mounts(config)
    assert "./dist (for /home/ray/resnetctl-dist)" in str(info.value)
    assert "ray get-auth-token --generate" in str(info.value)


def test_explain_failure() -> None:
    config = load_config(CLUSTER / "aws.yaml")
    assert "no cluster named resnetctl" in launcher.explain_failure(
        config, "RuntimeError: Head node of cluster (resnetctl) not found!"
    )
    assert "gcloud auth application-default login" in launcher.explain_failure(
        config, "google.auth.exceptions.DefaultCredentialsError: ..."
    )
    assert launcher.explain_failure(config, "something else") is None


def test_up_on_a_machine_without_the_ray_token_says_how_to_make_it(
    cli, fake_ray, variant, tmp_path, monkeypatch
) -> None:
    def fill_placeholders(node: object) -> object:
        if isinstance(node, dict):
            return {key: fill_placeholders(value) for key, value in node.items()}
        if isinstance(node, list):
            return [fill_placeholders(value) for value in node]
        return "ami-0123456789abcdef0" if "REPLACE" in str(node) else node

    fake_ray()
    config = variant("aws", lambda c: c.update(fill_placeholders(c)))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # a fresh machine: no ~/.ray/auth_token
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dist").mkdir()  # the wheel folder exists: only the token is missing
    # The cloud SDK and credentials are there (faked: checking them would call AWS).
    monkeypatch.setattr(launcher, "_installed", lambda module: True)
    monkeypatch.setattr(launcher, "_check_aws_credentials", lambda env: None)
    outcome = cli("up", str(config), "--yes")
    assert outcome.code == 2
    (line,) = outcome.stderr.strip().splitlines()
    assert "~/.ray/auth_token" in line and "`ray get-auth-token --generate`" in line
    assert calls(tmp_path, "ray") == []


def test_json_records_each_launcher_command_and_its_outcome(
    cli, fake_ray, tmp_path, monkeypatch
) -> None:
    import json

    ray = fake_ray("print('Node status: 1 node'); sys.exit(0)")
    monkeypatch.setattr(launcher, "preflight", lambda config, action: None)
    path = CLUSTER / "aws.yaml"
    planned = json.loads(cli("down", str(path), "--dry-run", "--json").stdout)
    assert planned == {
        "cluster": "resnetctl",
        "file": str(path),
        "action": "down",
        "dry_run": True,
        "commands": [f"{ray} down -y {path}"],
    }
    shown = cli("status", str(path), "--json")
    assert shown.code == 0, shown.stderr
    report = json.loads(shown.stdout)  # the launcher's output inside the JSON, not around it
    assert report["ok"] and [c["returncode"] for c in report["commands"]] == [0, 0]
    assert report["commands"][1]["output"] == "Node status: 1 node\n"
    fake_ray("sys.exit(3)")
    failed = cli("up", str(path), "--yes", "--json")
    assert failed.code == 1
    assert json.loads(failed.stdout)["ok"] is False
    assert json.loads(failed.stdout)["commands"][0]["returncode"] == 3
