"""`resnetctl cluster watch-preemption`: its options, its help's examples, and `--check` of a
metadata service on a machine without Ray."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main

from resnetctl.cli.app import app
from tests.preemption.metadata_servers import FakeGceMetadata, FakeImds

COMMAND = ("cluster", "watch-preemption")


def test_the_help_shows_examples_that_parse(cli) -> None:
    outcome = cli(*COMMAND, "--help")
    assert outcome.code == 0
    examples = re.findall(r"^\s*(resnetctl cluster watch-preemption [^#\n]+)", outcome.stdout, re.M)
    assert len(examples) == 2, outcome.stdout
    command = typer.main.get_command(app).get_command(None, "cluster")
    watch = command.get_command(None, "watch-preemption")
    for example in examples:
        words = shlex.split(example.strip())
        assert words[1:3] == list(COMMAND)
        params = watch.make_context("watch-preemption", words[3:]).params
        assert params["provider"].value in ("aws", "gcp")


REFUSED = [
    (
        ["-p", "aws", "--grace-period-seconds", "60"],
        "--grace-period-seconds applies to --provider kubernetes, not aws",
    ),
    (
        ["-p", "gcp", "--drain-on-rebalance"],
        "--drain-on-rebalance applies to --provider aws, not gcp",
    ),
    (
        ["-p", "kubernetes", "--metadata-url", "http://127.0.0.1:9"],
        "--metadata-url applies to --provider aws, gcp, not kubernetes",
    ),
    (
        ["-p", "aws", "--metadata-url", "169.254.169.254"],
        "--metadata-url '169.254.169.254': expected http://HOST[:PORT]",
    ),
    (["-p", "gcp", "--node-id", "node-1"], "--node-id 'node-1': expected Ray's 56 hex digits"),
]


@pytest.mark.parametrize(("args", "message"), REFUSED)
def test_options_of_another_provider_or_malformed_are_refused(cli, args, message) -> None:
    outcome = cli(*COMMAND, *args)
    assert outcome.code == 2
    assert f"error: {message}" in " ".join(outcome.stderr.split())


def test_an_unknown_provider_is_refused_naming_the_choices(cli) -> None:
    outcome = cli(*COMMAND, "--provider", "azure")
    assert outcome.code == 2
    assert "'azure' is not one of 'aws', 'gcp', 'kubernetes'" in outcome.stderr


def test_check_reads_the_metadata_and_says_when_ray_is_not_there(cli, tmp_path: Path) -> None:
    with FakeImds() as imds:
        imds.interrupt("terminate", in_s=120)
        args = ["-p", "aws", "--metadata-url", imds.url, "--temp-dir", str(tmp_path)]
        outcome = cli(*COMMAND, *args, "--check")
    assert outcome.code == 1
    assert f"aws: IMDSv2 at {imds.url}: session token granted" in outcome.stdout
    notice = f"EC2 spot interruption notice: terminate at {imds.action['time']}"
    assert f"aws: spot/instance-action: {notice}" in outcome.stdout
    assert "aws: events/recommendations/rebalance: nothing (404)" in outcome.stdout
    missing = f"no Ray cluster address: `ray start` has not run on this node (no {tmp_path}"
    assert f"error: ray: {missing}/ray_current_cluster)" in " ".join(outcome.stderr.split())


def test_check_says_when_the_metadata_service_does_not_answer(cli, tmp_path: Path) -> None:
    with FakeGceMetadata() as gce:
        url = gce.url
    args = ["-p", "gcp", "--metadata-url", url, "--temp-dir", str(tmp_path)]
    outcome = cli(*COMMAND, *args, "--check")
    assert outcome.code == 1
    assert "error: gcp: cannot read the notice: GET " in outcome.stderr
    assert "Connection refused" in outcome.stderr
