"""The cloud configs give every node access to one bucket, as each platform does it, and name
that bucket once, as a placeholder that `validate` reports and `up` refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from resnetctl.cluster import check_config, load_config
from resnetctl.cluster.parse import read_yaml
from resnetctl.cluster.placeholders import BUCKET_PLACEHOLDER, find_placeholders
from tests.cluster.conftest import CLUSTER, calls

CLOUD = ["aws.yaml", "gcp.yaml", "kuberay.yaml"]
STORAGE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / name).read_text())


def bucket_line(path: Path) -> int:
    """The one line of the file that names the bucket."""
    (line,) = [
        number
        for number, text in enumerate(path.read_text().splitlines(), 1)
        if BUCKET_PLACEHOLDER in text
    ]
    return line


def containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = manifest["spec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [group["template"]["spec"]["containers"][0] for group in groups]


# --- each node type carries the bucket access -------------------------------------------------


def test_every_aws_node_type_has_an_instance_profile() -> None:
    config = load("aws.yaml")
    profiles = {
        name: node["node_config"].get("IamInstanceProfile")
        for name, node in config["available_node_types"].items()
    }
    assert all(p and (p.get("Name") or p.get("Arn")) for p in profiles.values()), profiles
    head = profiles.pop(config["head_node_type"])
    # The head's profile also starts EC2 instances; the workers' only reaches the bucket.
    assert {p["Name"] for p in profiles.values()} == {"resnetctl-worker"} != {head["Name"]}


def test_every_gcp_node_type_has_a_service_account_with_the_storage_scope() -> None:
    config = load("gcp.yaml")
    for name, node in config["available_node_types"].items():
        (account,) = node["node_config"]["serviceAccounts"]
        assert account["email"].endswith(".iam.gserviceaccount.com"), name
        assert STORAGE_SCOPE in account["scopes"], name


def test_every_kuberay_container_gets_the_bucket_secret_and_storage() -> None:
    found = containers(load("kuberay.yaml"))
    assert len(found) == 4  # the head and three worker groups
    for container in found:
        assert {"secretRef": {"name": "resnetctl-bucket"}} in container["envFrom"]
        env = {item["name"]: item["value"] for item in container["env"]}
        assert BUCKET_PLACEHOLDER in env["RESNETCTL_STORAGE"], container["name"]


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_launcher_nodes_get_the_storage_in_their_environment(name: str) -> None:
    docker = load(name)["docker"]
    # run_options reach every node's container; per-kind options would replace them.
    assert "head_run_options" not in docker and "worker_run_options" not in docker
    (option,) = [o for o in docker["run_options"] if "RESNETCTL_STORAGE=" in o]
    scheme = "gs" if name == "gcp.yaml" else "s3"
    assert option == f"--env RESNETCTL_STORAGE={scheme}://{BUCKET_PLACEHOLDER}/resnetctl/runs"


@pytest.mark.parametrize("name", CLOUD)
def test_the_bucket_is_named_once_per_file(name: str) -> None:
    assert (CLUSTER / name).read_text().count(BUCKET_PLACEHOLDER) == 1


# --- validate reports it, up refuses it -------------------------------------------------------


@pytest.mark.parametrize("name", CLOUD)
def test_validate_reports_the_bucket_placeholder_at_its_line(name: str) -> None:
    path = CLUSTER / name
    report = check_config(path)
    assert report.ok
    (warning,) = [w for w in report.warnings if BUCKET_PLACEHOLDER in w.message]
    assert warning.line == bucket_line(path)
    assert str(warning).startswith(f"{path}:{bucket_line(path)}: ")
    assert "put your bucket and prefix for runs and checkpoints" in warning.message


def test_cli_validate_warns_about_the_bucket_and_still_passes(cli) -> None:
    path = CLUSTER / "kuberay.yaml"
    outcome = cli("validate", str(path))
    assert outcome.code == 0
    assert f"warning: {path}:{bucket_line(path)}: spec.headGroupSpec" in outcome.stderr
    assert cli("validate", str(path), "--strict").code == 2


@pytest.mark.parametrize("name", CLOUD)
def test_up_refuses_the_bucket_placeholder_before_running_anything(
    name: str, cli, fake_ray, tmp_path, monkeypatch
) -> None:
    fake_ray()
    monkeypatch.setenv("PATH", str(tmp_path))  # no kubectl either: nothing may run
    path = CLUSTER / name
    outcome = cli("up", str(path), "--yes")
    assert outcome.code == 2
    assert f"error: {path} still has placeholders to fill in" in outcome.stderr
    # The bucket comes first, at its line, with what to put there.
    first = outcome.stderr.splitlines()[1]
    assert first.startswith(f"  {path}:{bucket_line(path)}: ")
    assert "put your bucket and prefix" in first
    assert calls(tmp_path, "ray") == []


def test_up_refuses_when_only_the_bucket_is_left(cli, fake_ray, tmp_path, variant) -> None:
    def fill_all_but_the_bucket(config: dict[str, Any]) -> None:
        for node in config["available_node_types"].values():
            node["node_config"]["ImageId"] = "ami-0123456789abcdef0"

    fake_ray()
    path = variant("aws", fill_all_but_the_bucket)
    outcome = cli("up", str(path), "--yes")
    assert outcome.code == 2
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 2 and "docker.run_options[1]" in lines[1], lines
    assert "s3://my-team-resnet/runs" in lines[1]
    assert calls(tmp_path, "ray") == []


def test_an_aliased_value_is_one_placeholder_and_repeats_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "a:\n"
        "  env: &e [{name: X, value: s3://REPLACE-ME-bucket/p}]\n"
        "b:\n"
        "  env: *e\n"
        "  image: REPLACE-image\n"
        "c: {image: REPLACE-image}\n"
    )
    raw, lines = read_yaml(path)
    bucket, image = find_placeholders(raw, lines)
    assert (bucket.line, bucket.other_lines) == (2, ())
    assert (image.path, image.line, image.other_lines) == (("b", "image"), 5, (6,))
    assert "also at line 6" in image.describe()


def test_a_filled_config_has_no_placeholder_left(variant) -> None:
    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: fill(value) for key, value in node.items()}
        if isinstance(node, list):
            return [fill(value) for value in node]
        return node.replace("REPLACE-ME-bucket", "my-bucket") if isinstance(node, str) else node

    config = load_config(variant("kuberay", lambda c: c.update(fill(c))))
    assert [p.value for p in find_placeholders(config.raw, config.lines)] == [
        "REPLACE-WITH-YOUR-REGISTRY/resnetctl:0.1.0"
    ]
