"""The configs in cluster/ validate; broken variants fail with messages naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnetctl.cluster import check_config, load_config
from resnetctl.cluster.config import ClusterConfigError
from resnetctl.cluster.launcher_config import ray_schema_issues
from tests.cluster.conftest import CLUSTER, CONFIGS
from tests.conftest import JOBS


def errors(path: Path, *jobs: object) -> list[str]:
    return [str(i) for i in check_config(path, jobs).errors]  # type: ignore[arg-type]


def test_the_shipped_configs_are_the_four_expected() -> None:
    assert {p.name for p in CONFIGS} == {"aws.yaml", "gcp.yaml", "kuberay.yaml", "local.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path: Path, job) -> None:
    report = check_config(path)
    assert report.ok, [str(i) for i in report.errors]
    config = report.config
    assert config is not None and config.head is not None
    assert config.workers and all(t.min_workers == 0 for t in config.workers)
    assert config.head.cpus == 0  # the head never trains
    assert config.idle_timeout_s is not None
    # Only the per-site values (AMI, project, image) may be left as warnings, never a policy one.
    assert all("placeholder" in i.message for i in report.warnings), report.warnings
    if path.name != "local.yaml":
        assert check_config(path, [job("r50"), job("quickstart")]).ok


@pytest.mark.parametrize("name", ["aws", "gcp", "local"])
def test_launcher_configs_pass_rays_own_schema(name: str) -> None:
    import yaml

    raw = yaml.safe_load((CLUSTER / f"{name}.yaml").read_text())
    assert ray_schema_issues(name, raw, {}) == []


def test_cloud_configs_keep_the_dashboard_private() -> None:
    for name in ("aws", "gcp"):
        text = (CLUSTER / f"{name}.yaml").read_text()
        assert "--dashboard-host=127.0.0.1" in text and "0.0.0.0" not in text
    kuberay = load_config(CLUSTER / "kuberay.yaml")
    assert kuberay.raw["spec"]["headGroupSpec"]["serviceType"] == "ClusterIP"


def test_gpu_types_declare_what_their_machines_have() -> None:
    aws = {t.name: t for t in load_config(CLUSTER / "aws.yaml").workers}
    assert (aws["gpu-8x-a100"].gpus, aws["gpu-8x-a100"].accelerator) == (8, "A100")
    assert (aws["gpu-8x-h100"].gpus, aws["gpu-8x-h100"].accelerator) == (8, "H100")
    assert aws["gpu-1x-a10g"].gpus == 1
    gcp = {t.name: t for t in load_config(CLUSTER / "gcp.yaml").workers}
    assert gcp["gpu-8x-a100"].gpus == 8 and gcp["gpu-1x-a100"].gpus == 1
    kube = {t.name: t for t in load_config(CLUSTER / "kuberay.yaml").workers}
    assert (kube["gpu-8x"].cpus, kube["gpu-8x"].gpus, kube["gpu-8x"].max_workers) == (88, 8, 2)


# --- broken launcher configs ------------------------------------------------------------------


def test_a_typo_in_a_top_level_key_is_caught_by_rays_schema(variant) -> None:
    path = variant("aws", lambda c: c.update(max_worker=c.pop("max_workers")))
    (message,) = errors(path)
    assert f"{path}:" in message
    assert (
        "max_worker: unknown key (Ray's schema allows no such field); did you mean 'max_workers'?"
    ) in message


def test_a_typo_inside_a_node_type_is_caught_by_rays_schema(variant) -> None:
    def edit(config: dict) -> None:
        node = config["available_node_types"]["gpu-8x-a100"]
        node["min_worker"] = node.pop("min_workers")

    (message,) = errors(variant("gcp", edit))
    assert "available_node_types.gpu-8x-a100.min_worker: unknown key" in message
    assert "did you mean 'min_workers'?" in message


def test_a_wrong_type_is_caught_by_rays_schema(variant) -> None:
    path = variant("aws", lambda c: c["available_node_types"]["cpu-16"].update(max_workers="4"))
    (message,) = errors(path)
    assert "available_node_types.cpu-16.max_workers: '4' is not of type 'integer'" in message


def test_an_unknown_head_node_type_is_caught_by_rays_validate_config(variant) -> None:
    path = variant("aws", lambda c: c.update(head_node_type="ray.head.gpu"))
    (message,) = errors(path)
    assert "head_node_type: Ray's validate_config: `head_node_type` must be one of" in message


def test_min_workers_above_the_cluster_cap_is_caught_by_ray(variant) -> None:
    path = variant("aws", lambda c: c["available_node_types"]["cpu-16"].update(min_workers=9))
    (message,) = errors(path)
    assert ": max_workers: Ray's validate_config: The specified global `max_workers`" in message


def test_min_workers_above_a_types_max_workers(variant) -> None:
    path = variant("gcp", lambda c: c["available_node_types"]["cpu-16"].update(min_workers=5))
    assert any(
        "available_node_types.cpu-16.min_workers: 5 is more than max_workers 4" in m
        for m in errors(path)
    )


def test_a_gpu_job_needs_a_gpu_node_type(variant, job) -> None:
    def drop_gpu_types(config: dict) -> None:
        for name in [n for n in config["available_node_types"] if n.startswith("gpu")]:
            del config["available_node_types"][name]

    path = variant("aws", drop_gpu_types)
    assert errors(path) == []  # fine on its own ...
    (message,) = errors(path, job("r50"))  # ... but not for a GPU job
    assert f"{path}:" in message
    assert (
        "available_node_types: job r50 needs a GPU node type that holds one worker "
        "(8 CPU + 1 GPU); worker types: cpu-16: m6i.4xlarge, 16 CPU"
    ) in message


def test_max_workers_too_small_for_the_job(variant, job) -> None:
    def only_single_gpu(config: dict) -> None:
        types = config["available_node_types"]
        del types["gpu-8x-a100"], types["gpu-8x-h100"]
        types["gpu-1x-a10g"]["max_workers"] = 4

    (message,) = errors(variant("aws", only_single_gpu), job("r50"))
    assert (
        "available_node_types.gpu-1x-a10g.max_workers: job r50 needs 8 gpu-1x-a10g "
        "node(s) (1 of its 8 workers per node) but at most 4 may start"
    ) in message


def test_the_cluster_wide_max_workers_too_small_for_the_job(variant, job) -> None:
    def capped(config: dict) -> None:
        types = config["available_node_types"]
        del types["gpu-8x-a100"], types["gpu-8x-h100"]
        config["max_workers"] = 3

    path = variant("gcp", capped)
    messages = errors(path, job("r50"))
    assert any(
        ": max_workers: job r50 needs 8 gpu-1x-a100 node(s) but the cluster-wide "
        "max_workers 3 leaves room for 3" in m
        for m in messages
    ), messages


def test_declared_gpus_must_match_the_machine(variant) -> None:
    path = variant(
        "aws", lambda c: c["available_node_types"]["gpu-8x-a100"]["resources"].update(GPU=4)
    )
    (message,) = errors(path)
    assert (
        "available_node_types.gpu-8x-a100.resources.GPU: 4 declared but p4d.24xlarge has 8 GPUs"
    ) in message


def test_gcp_gpus_must_be_declared(variant) -> None:
    path = variant(
        "gcp", lambda c: c["available_node_types"]["gpu-1x-a100"]["resources"].pop("GPU")
    )
    (message,) = errors(path)
    assert (
        "available_node_types.gpu-1x-a100.resources: declares no GPU but a2-highgpu-1g has 1"
    ) in message


def test_declared_cpus_cannot_exceed_the_machine(variant) -> None:
    path = variant("aws", lambda c: c["available_node_types"]["cpu-16"]["resources"].update(CPU=64))
    assert any(
        "cpu-16.resources.CPU: 64 declared but m6i.4xlarge has 16 vCPUs" in m for m in errors(path)
    )


def test_a_public_dashboard_is_flagged(variant) -> None:
    def public(config: dict) -> None:
        config["head_start_ray_commands"][1] = config["head_start_ray_commands"][1].replace(
            "127.0.0.1", "0.0.0.0"
        )

    report = check_config(variant("aws", public))
    assert report.ok
    assert any(
        "head_start_ray_commands[1]: the dashboard (and Jobs API) listens on every "
        "interface" in str(w)
        for w in report.warnings
    )


def test_idle_gpu_nodes_are_flagged(variant) -> None:
    path = variant("aws", lambda c: c["available_node_types"]["gpu-1x-a10g"].update(min_workers=1))
    report = check_config(path)
    assert report.ok
    assert any(
        "gpu-1x-a10g.min_workers: 1 GPU nodes run (and bill)" in str(w) for w in report.warnings
    )


def test_yaml_errors_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster_name: x\nprovider: [unclosed\n")
    (message,) = errors(bad)
    assert message.startswith(f"{bad}:") and "YAML syntax error" in message
    assert errors(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: <file>: no such file"]
    with pytest.raises(ClusterConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")


# --- broken KubeRay manifests ----------------------------------------------------------------


def group(config: dict, name: str) -> dict:
    return next(g for g in config["spec"]["workerGroupSpecs"] if g["groupName"] == name)


def test_kuberay_num_gpus_must_match_the_gpu_limit(variant) -> None:
    path = variant(
        "kuberay", lambda c: group(c, "gpu-8x")["rayStartParams"].update({"num-gpus": "4"})
    )
    (message,) = errors(path)
    assert (
        "spec.workerGroupSpecs[0].rayStartParams.num-gpus: 4 but the container's "
        "nvidia.com/gpu limit is 8"
    ) in message


def test_kuberay_gpu_request_must_equal_limit(variant) -> None:
    def edit(config: dict) -> None:
        resources = group(config, "gpu-1x")["template"]["spec"]["containers"][0]["resources"]
        resources["requests"]["nvidia.com/gpu"] = 2

    (message,) = errors(variant("kuberay", edit))
    assert (
        "spec.workerGroupSpecs[1].template.spec.containers[0].resources.requests."
        "nvidia.com/gpu: 2 must equal the limit 1"
    ) in message


def test_kuberay_min_above_max_and_non_string_params(variant) -> None:
    def edit(config: dict) -> None:
        group(config, "cpu").update(minReplicas=5)
        group(config, "gpu-1x")["rayStartParams"]["num-cpus"] = 10

    messages = errors(variant("kuberay", edit))
    assert any(
        "spec.workerGroupSpecs[2].minReplicas: 5 is more than maxReplicas 4" in m for m in messages
    ), messages
    assert any(
        "spec.workerGroupSpecs[1].rayStartParams.num-cpus: 10 must be a string "
        '(quote it: "10")' in m
        for m in messages
    ), messages


def test_kuberay_typo_is_named_with_a_suggestion(variant) -> None:
    def edit(config: dict) -> None:
        gpu = group(config, "gpu-8x")
        gpu["maxReplica"] = gpu.pop("maxReplicas")

    path = variant("kuberay", edit)
    messages = errors(path)
    assert any(
        "spec.workerGroupSpecs[0].maxReplica: unknown field; did you mean 'maxReplicas'?" in m
        for m in messages
    ), messages


def test_kuberay_max_replicas_too_small_for_the_job(variant, job) -> None:
    def edit(config: dict) -> None:
        config["spec"]["workerGroupSpecs"] = [group(config, "gpu-1x"), group(config, "cpu")]
        group(config, "gpu-1x")["maxReplicas"] = 2

    (message,) = errors(variant("kuberay", edit), job("r50"))
    assert "spec.workerGroupSpecs[0].maxReplicas: job r50 needs 8 gpu-1x node(s)" in message


def test_kuberay_autoscaling_off_and_public_service_are_warned(variant) -> None:
    def edit(config: dict) -> None:
        config["spec"]["enableInTreeAutoscaling"] = False
        config["spec"]["headGroupSpec"]["serviceType"] = "LoadBalancer"

    report = check_config(variant("kuberay", edit))
    assert report.ok
    fields = {w.field for w in report.warnings}
    assert {"spec.enableInTreeAutoscaling", "spec.headGroupSpec.serviceType"} <= fields


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_validate_all_configs_with_jobs(cli) -> None:
    files = [str(p) for p in CONFIGS if p.name != "local.yaml"]
    outcome = cli(
        "validate", *files, "--job", str(JOBS / "r50.yaml"), "--job", str(JOBS / "quickstart.yaml")
    )
    assert outcome.code == 0, outcome.stderr
    assert "ok " in outcome.stdout and "job r50: 1 x gpu-8x-a100" in outcome.stdout
    assert "error" not in outcome.stderr


def test_cli_validate_exits_2_naming_file_and_field(cli, variant) -> None:
    good = CLUSTER / "aws.yaml"
    bad = variant("aws", lambda c: c.update(idle_timeout_minute=5))
    outcome = cli("validate", str(good), str(bad))
    assert outcome.code == 2
    assert f"ok {good}" in outcome.stdout
    assert (
        f"error: {bad}:" in outcome.stderr and "idle_timeout_minute: unknown key" in outcome.stderr
    )


def test_cli_validate_json_and_the_local_config_refuses_a_gpu_job(cli) -> None:
    local = CLUSTER / "local.yaml"
    outcome = cli("validate", str(local), "--job", str(JOBS / "r50.yaml"), "--json")
    assert outcome.code == 2
    (report,) = json.loads(outcome.stdout)
    assert report["valid"] is False
    assert report["errors"][0]["field"] == "available_node_types"
    assert report["errors"][0]["line"] is not None


def test_cli_validate_strict_fails_on_warnings(cli) -> None:
    assert cli("validate", str(CLUSTER / "aws.yaml"), "--strict").code == 2
    assert cli("validate", str(CLUSTER / "local.yaml"), "--strict").code == 0


# --- the preemption watcher on every worker node ------------------------------------------------


def watcher_argv(words: list[str]) -> list[str]:
    """The arguments after `resnetctl` in a command that runs the watcher."""
    start = words.index("resnetctl")
    assert words[start + 1 : start + 3] == ["cluster", "watch-preemption"], words
    end = next((i for i, w in enumerate(words) if i > start and w in (">", "&", "<")), len(words))
    return words[start + 1 : end]


def parses(argv: list[str]) -> dict:
    """The options the real CLI reads from `argv` (`cluster watch-preemption ...`)."""
    import typer.main

    from resnetctl.cli.app import app

    group = typer.main.get_command(app)
    cluster = group.get_command(None, argv[0])  # type: ignore[attr-defined]
    command = cluster.get_command(None, argv[1])
    return command.make_context(argv[1], argv[2:]).params


@pytest.mark.parametrize("name", ["aws", "gcp"])
def test_launcher_configs_start_the_watcher_on_every_worker_after_ray(name: str) -> None:
    import shlex

    import yaml

    raw = yaml.safe_load((CLUSTER / f"{name}.yaml").read_text())
    commands = raw["worker_start_ray_commands"]
    starts = [i for i, c in enumerate(commands) if "ray start" in c]
    watchers = [i for i, c in enumerate(commands) if "watch-preemption" in c]
    assert len(starts) == 1 and len(watchers) == 1 and watchers[0] > starts[0]
    words = shlex.split(commands[watchers[0]])
    # In the background, in a session of its own, its output nowhere but its log.
    assert words[-1] == "&" and words[:3] == ["RAY_AUTH_MODE=token", "setsid", "nohup"]
    params = parses(watcher_argv(words))
    assert params["provider"].value == name
    assert params["address"] == "$RAY_HEAD_IP:6379"  # the head the node's `ray start` joined
    assert str(params["log_file"]).startswith("/tmp/ray/session_latest/logs/")
    assert params["metadata_url"] is None and not params["check"]  # the cloud's real service
    # The head is on demand: no watcher there.
    assert not any("watch-preemption" in c for c in raw["head_start_ray_commands"])


def test_gcp_containers_outlive_the_30_seconds_of_a_preemption() -> None:
    import yaml

    options = yaml.safe_load((CLUSTER / "gcp.yaml").read_text())["docker"]["run_options"]
    assert "--stop-timeout 30" in options


def test_kuberay_workers_drain_in_their_prestop_hook_with_the_pods_grace_period() -> None:
    kuberay = load_config(CLUSTER / "kuberay.yaml").raw["spec"]
    head = kuberay["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "lifecycle" not in head
    groups = kuberay["workerGroupSpecs"]
    assert len(groups) == 3
    for group in groups:
        pod = group["template"]["spec"]
        command = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
        params = parses(watcher_argv(command))
        assert params["provider"].value == "kubernetes"
        assert params["grace_period_s"] == pod["terminationGracePeriodSeconds"] == 120
        assert str(params["log_file"]).startswith("/tmp/ray/session_latest/logs/")


def test_kuberay_watcher_grace_unlike_the_pods_is_warned(variant) -> None:
    def edit(config: dict) -> None:
        group(config, "gpu-1x")["template"]["spec"]["terminationGracePeriodSeconds"] = 60

    report = check_config(variant("kuberay", edit))
    assert report.ok
    (warning,) = [w for w in report.warnings if "preemption watcher" in w.message]
    assert warning.field.startswith("spec.workerGroupSpecs[1].template.spec.containers[0]")
    assert (
        "drains with --grace-period-seconds 120 but the pod's terminationGracePeriodSeconds "
        "is 60: give both the same number"
    ) in warning.message
