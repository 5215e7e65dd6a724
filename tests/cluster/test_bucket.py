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


# --- validate warns about a node type without access ------------------------------------------


def access_warnings(path: Path) -> list[str]:
    report = check_config(path)
    assert report.ok, [str(i) for i in report.errors]
    return [str(w) for w in report.warnings if "cannot write the bucket" in w.message]


@pytest.mark.parametrize("name", CLOUD)
def test_the_shipped_configs_give_every_node_type_access(name: str) -> None:
    assert access_warnings(CLUSTER / name) == []


def test_an_aws_node_type_without_a_profile_is_warned(variant) -> None:
    def drop_profile(config: dict[str, Any]) -> None:
        del config["available_node_types"]["cpu-16"]["node_config"]["IamInstanceProfile"]

    path = variant("aws", drop_profile)
    (warning,) = access_warnings(path)
    assert warning.startswith(f"{path}:")
    assert ": available_node_types.cpu-16.node_config: no IamInstanceProfile: nodes" in warning
    assert f"s3://{BUCKET_PLACEHOLDER}/resnetctl/runs (RESNETCTL_STORAGE, line " in warning


def test_a_gcp_node_type_with_the_default_read_only_scope_is_warned(variant) -> None:
    def read_only(config: dict[str, Any]) -> None:
        node_config = config["available_node_types"]["gpu-1x-a100"]["node_config"]
        node_config["serviceAccounts"] = [
            {
                "email": "resnetctl-worker@p.iam.gserviceaccount.com",
                "scopes": ["https://www.googleapis.com/auth/devstorage.read_only"],
            }
        ]
        del config["available_node_types"]["cpu-16"]["node_config"]["serviceAccounts"]

    warnings = access_warnings(variant("gcp", read_only))
    assert [w.split(": ")[1] for w in warnings] == [
        "available_node_types.gpu-1x-a100.node_config",
        "available_node_types.cpu-16.node_config",
    ]


def test_a_kuberay_group_without_keys_or_identity_is_warned(variant) -> None:
    def drop_secret(config: dict[str, Any]) -> None:
        pod = config["spec"]["workerGroupSpecs"][2]["template"]["spec"]
        del pod["containers"][0]["envFrom"]

    (warning,) = access_warnings(variant("kuberay", drop_secret))
    assert ": spec.workerGroupSpecs[2].template.spec.containers[0]: no envFrom Secret" in warning

    def workload_identity(config: dict[str, Any]) -> None:
        drop_secret(config)
        config["spec"]["workerGroupSpecs"][2]["template"]["spec"]["serviceAccountName"] = "rn"

    assert access_warnings(variant("kuberay", workload_identity)) == []


def test_a_local_storage_path_asks_for_no_bucket_access(variant) -> None:
    def shared_path(config: dict[str, Any]) -> None:
        config["docker"]["run_options"][1] = "--env RESNETCTL_STORAGE=/mnt/nfs/runs"
        for node in config["available_node_types"].values():
            node["node_config"].pop("IamInstanceProfile")

    assert access_warnings(variant("aws", shared_path)) == []
