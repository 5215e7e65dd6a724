"""`plan_placement`: node types and counts for the repo's jobs on the shipped configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnetctl.cluster import format_placement, load_config, plan_placement
from resnetctl.cluster.config import ClusterConfig, NodeType
from tests.cluster.conftest import CLUSTER
from tests.conftest import JOBS


@pytest.mark.parametrize(
    ("config", "job_name", "expected"),
    [
        # r50: 8 workers x (8 CPU + 1 GPU): one 8-GPU machine, the first such type listed.
        ("aws", "r50", {"gpu-8x-a100": 1}),
        ("gcp", "r50", {"gpu-8x-a100": 1}),
        ("kuberay", "r50", {"gpu-8x": 1}),
        # quickstart: 2 workers x 1 CPU, no GPU: the CPU type, never a GPU machine.
        ("aws", "quickstart", {"cpu-16": 1}),
        ("gcp", "quickstart", {"cpu-16": 1}),
        ("kuberay", "quickstart", {"cpu": 1}),
        # The fake local cluster: one 1-CPU node per worker (what the autoscaling test sees).
        ("local", "quickstart", {"cpu.1": 2}),
    ],
)
def test_node_counts_for_the_repos_jobs(config: str, job_name: str, expected, job) -> None:
    plan = plan_placement(job(job_name), load_config(CLUSTER / f"{config}.yaml"))
    assert plan.fits, plan.problems
    assert plan.node_counts == expected
    assert plan.nodes == sum(expected.values())
    assert sum(a.workers for a in plan.allocations) == plan.workers
    assert not plan.problems


def test_plan_accepts_a_path_and_says_why_not(job) -> None:
    plan = plan_placement(job("r50"), CLUSTER / "local.yaml")
    assert not plan.fits and plan.nodes == 0
    (problem,) = plan.problems
    assert problem.field == "available_node_types"
    assert "needs a GPU node type" in problem.message
    assert plan.candidates["cpu.1"] == "no GPUs"


def test_single_gpu_nodes_when_the_big_ones_are_gone(job, variant) -> None:
    def only_single(config: dict) -> None:
        del config["available_node_types"]["gpu-8x-a100"]
        del config["available_node_types"]["gpu-8x-h100"]

    plan = plan_placement(job("r50"), variant("aws", only_single))
    assert plan.fits and plan.node_counts == {"gpu-1x-a10g": 8}
    assert plan.allocations[-1].workers_per_node == 1


def test_mixed_node_types_when_no_single_type_suffices(job, variant) -> None:
    def small_limits(config: dict) -> None:
        types = config["available_node_types"]
        del types["gpu-8x-a100"], types["gpu-8x-h100"]
        types["gpu-1x-a10g"]["max_workers"] = 4
        types["gpu-4x"] = {
            "min_workers": 0,
            "max_workers": 1,
            "resources": {"CPU": 48, "GPU": 4},
            "node_config": {"InstanceType": "g5.12xlarge", "ImageId": "ami-x"},
        }

    plan = plan_placement(job("r50"), variant("aws", small_limits))
    assert plan.fits, plan.problems
    assert plan.node_counts == {"gpu-4x": 1, "gpu-1x-a10g": 4}
    assert "several node types" in plan.notes[0]


def synthetic(head_cpus: float, worker_types: list[NodeType], cap: int | None) -> ClusterConfig:
    head = NodeType("head", head_cpus, 0, 0, 0, head=True)
    return ClusterConfig(
        path=CLUSTER / "synthetic.yaml",
        kind="launcher",
        name="synthetic",
        provider="aws",
        node_types=(head, *worker_types),
        max_workers=cap,
        idle_timeout_s=60,
        raw={},
    )


def test_a_head_with_room_holds_workers_without_new_nodes(job) -> None:
    config = synthetic(4, [NodeType("cpu", 1, 0, 0, 4, path=("available_node_types", "cpu"))], 4)
    plan = plan_placement(job("quickstart"), config)
    assert plan.fits and plan.nodes == 0
    assert plan.allocations[0].head and plan.allocations[0].workers == 2


def test_min_workers_of_other_types_take_cluster_slots(job) -> None:
    pinned = NodeType("pinned", 1, 0, 3, 3, path=("available_node_types", "pinned"))
    spare = NodeType("spare", 1, 0, 0, 4, path=("available_node_types", "spare"))
    plan = plan_placement(job("quickstart"), synthetic(0, [spare, pinned], 4))
    # pinned's 3 always-on nodes leave one slot for spare; pinned itself holds both workers.
    assert plan.fits and plan.node_counts == {"pinned": 2}
    assert "2 of the pinned nodes run all the time (min_workers)" in plan.notes
    assert plan.candidates["spare"] == "1 per node, up to 1 node(s)"


def test_a_cpu_job_uses_gpu_machines_only_when_nothing_else_exists(job) -> None:
    gpu = NodeType("gpu", 8, 1, 0, 2, path=("available_node_types", "gpu"))
    plan = plan_placement(job("quickstart"), synthetic(0, [gpu], 2))
    assert plan.fits and plan.node_counts == {"gpu": 1}
    assert any("GPUs that this CPU job leaves idle" in n for n in plan.notes)


def test_format_placement_and_json(job) -> None:
    plan = plan_placement(job("r50"), CLUSTER / "aws.yaml")
    text = format_placement(plan)
    assert text.splitlines()[0] == (
        "Placement of job r50 (8 workers x 8 CPU + 1 GPU) on cluster resnetctl "
        f"({CLUSTER / 'aws.yaml'}):"
    )
    assert "1 x gpu-8x-a100 (p4d.24xlarge, 96 CPU, 8 GPU (A100)): 8 worker(s), 8 per node" in text
    assert "removes the nodes 10 min after they fall idle" in text
    data = json.loads(json.dumps(plan.as_dict()))
    assert data["fits"] is True and data["nodes"] == 1

    refused = format_placement(plan_placement(job("r50"), CLUSTER / "local.yaml"))
    assert "does not fit" in refused and "why: " in refused and "available_node_types" in refused


def test_cli_plan_exit_codes(cli) -> None:
    fits = cli("plan", str(JOBS / "quickstart.yaml"), str(CLUSTER / "local.yaml"))
    assert fits.code == 0 and "2 x cpu.1 (1 CPU): 2 worker(s), 1 per node" in fits.stdout
    refused = cli("plan", str(JOBS / "r50.yaml"), str(CLUSTER / "local.yaml"), "--json")
    assert refused.code == 2 and json.loads(refused.stdout)["fits"] is False
    bigger = cli(
        "plan",
        str(JOBS / "quickstart.yaml"),
        str(CLUSTER / "local.yaml"),
        "--set",
        "resources.workers=8",
        "--set",
        "train.global_batch_size=64",
    )
    assert bigger.code == 2
    assert "cpu.1.max_workers: job quickstart needs 8 cpu.1 node(s)" in bigger.stdout


def test_plan_and_validate_need_no_data_path_variable(cli, monkeypatch) -> None:
    monkeypatch.delenv("RESNETCTL_IMAGENET", raising=False)
    aws = str(CLUSTER / "aws.yaml")
    r50 = str(JOBS / "r50.yaml")
    for outcome in (cli("plan", r50, aws), cli("validate", aws, "--job", r50)):
        assert outcome.code == 0, outcome.stderr
        assert "${RESNETCTL_IMAGENET} is not set" in outcome.stderr


def test_a_multi_node_job_with_local_storage_is_warned(cli) -> None:
    args = (str(JOBS / "quickstart.yaml"), str(CLUSTER / "local.yaml"))
    local = cli("plan", *args, "--storage", "/home/me/runs")
    assert local.code == 0
    assert "warning: job quickstart places its workers on 2 nodes but its run storage " in (
        local.stderr
    )
    assert "/home/me/runs is a local path" in local.stderr and "s3://BUCKET/runs" in local.stderr
    bucket = cli("plan", *args, "--storage", "s3://bucket/runs", "--json")
    assert bucket.code == 0 and "warning" not in bucket.stderr
    assert json.loads(bucket.stdout)["storage_warnings"] == []
    # validate --job says the same, and --strict makes it an error.
    validated = cli("validate", args[1], "--job", args[0], "--storage", "/home/me/runs")
    assert validated.code == 0 and "places its workers on 2 nodes" in validated.stderr
    assert cli("validate", args[1], "--job", args[0], "--storage", "/x", "--strict").code == 2
    # One node (the head or one machine) needs no shared storage.
    one = cli("plan", str(JOBS / "r50.yaml"), str(CLUSTER / "aws.yaml"), "--storage", "/x")
    assert one.code == 0 and "warning" not in one.stderr


def test_without_storage_a_job_is_checked_against_the_nodes_bucket(cli, tmp_path: Path) -> None:
    import yaml

    # A job submitted without --storage keeps its runs where the nodes' RESNETCTL_STORAGE says.
    args = (str(JOBS / "quickstart.yaml"), str(CLUSTER / "local.yaml"))
    assert "places its workers on 2 nodes" in cli("plan", *args).stderr  # ~/resnetctl/runs
    config = yaml.safe_load((CLUSTER / "local.yaml").read_text())
    config.setdefault("docker", {})["run_options"] = ["--env RESNETCTL_STORAGE=s3://team/runs"]
    with_bucket = tmp_path / "local.yaml"
    with_bucket.write_text(yaml.safe_dump(config))
    planned = cli("plan", args[0], str(with_bucket), "--json")
    assert planned.code == 0, planned.stderr
    assert json.loads(planned.stdout)["storage_warnings"] == []
    # --storage still wins over the nodes'.
    assert (
        "places its workers on 2 nodes"
        in cli("plan", args[0], str(with_bucket), "--storage", "/x").stderr
    )
