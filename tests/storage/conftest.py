"""An S3-compatible server on loopback (moto), for run storage and data in a bucket.

One server per session: it takes ~5 s to answer. It runs in a session of its own and is killed
by process group afterwards. The AWS variables point boto3, pyarrow, DALI and every subprocess
(`resnetctl submit`, Ray workers) at it with fake keys.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.launch.conftest import (  # noqa: F401 (submit, workdir: fixtures used here)
    Processes,
    RayNodes,
    mlflow_up,
    start_mlflow,
    submit,
    two_node_cluster,
    workdir,
)
from tests.processes import free_port, kill_group, wait_for


@dataclass
class S3Server:
    """The running server: its endpoint, and a boto3 client for it."""

    endpoint: str
    client: object
    env: dict[str, str]  # the AWS variables that point a process at it
    log: Path | None = None  # the server's output: one line per request it answered

    def log_size(self) -> int:
        """Where the request log ends now (for `requests` of what follows)."""
        assert self.log is not None
        return self.log.stat().st_size

    def requests(self, since: int = 0) -> list[str]:
        """The request lines (`GET /bucket?list-type=2... HTTP/1.1`) logged after `since`."""
        assert self.log is not None
        text = self.log.read_bytes()[since:].decode("utf-8", "replace")
        return re.findall(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+ /\S* HTTP/[0-9.]+)', text)

    def listings(self, bucket: str, since: int = 0) -> list[str]:
        """Requests after `since` that list `bucket` (a GET of the bucket, not of a key)."""
        return [r for r in self.requests(since) if re.match(rf"GET /{bucket}/?(\?\S*)? ", r)]

    def new_bucket(self) -> str:
        """A fresh bucket, so tests never see each other's objects."""
        name = f"t-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def read(self, bucket: str, key: str) -> str:
        """One object's text."""
        answer = self.client.get_object(Bucket=bucket, Key=key)  # type: ignore[attr-defined]
        return answer["Body"].read().decode("utf-8")

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under `prefix`."""
        paginator = self.client.get_paginator("list_objects_v2")  # type: ignore[attr-defined]
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]


def _answers(endpoint: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(endpoint, timeout=2)  # noqa: S310 (loopback only)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """`python -m moto.server` on a free loopback port, with the AWS variables set for this
    process and its children; killed by process group at the end of the session."""
    pytest.importorskip("moto")
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    variables = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {name: os.environ.get(name) for name in variables}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        if not wait_for(lambda: _answers(endpoint), timeout=60, interval=0.3):
            pytest.fail(f"moto did not answer on {endpoint}: {log.read_text()[-2000:]}")
        os.environ.update(variables)
        yield S3Server(endpoint, boto3.client("s3"), variables, log)
    finally:
        kill_group(process)  # type: ignore[arg-type]
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A new empty bucket on the loopback server."""
    return s3_server.new_bucket()


def export_data(data: dict, bucket: str, prefix: str = "data") -> str:
    """The image folder of a spec's `data` section (e.g. the bundled digits or a synthetic set),
    written locally once and copied into the bucket; returns its URI, for `data.source.root`."""
    import boto3

    from resnetctl.data import prepare_dataset
    from resnetctl.spec.data import DataSpec

    layout = prepare_dataset(DataSpec.model_validate(data))
    client = boto3.client("s3")
    files = [
        (f"{prefix}/{split}/{path.relative_to(folder).as_posix()}", path)
        for split, folder in (("train", layout.train_dir), ("val", layout.val_dir))
        for path in sorted(Path(folder).rglob("*"))
        if path.is_file()
    ]

    def put(item: tuple[str, Path]) -> None:
        client.put_object(Bucket=bucket, Key=item[0], Body=item[1].read_bytes())

    # One request per image: the digits' 1,797 took ~37 s one after another; boto3's clients
    # are thread-safe, and moto serves requests in threads.
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, files))
    return f"s3://{bucket}/{prefix}"


@dataclass
class S3Cluster:
    """A two-node Ray cluster whose nodes reach the loopback S3 server, and an MLflow server
    whose artifacts go to `s3://bucket/mlflow`."""

    nodes: RayNodes
    s3: S3Server
    bucket: str
    mlflow: str
    local_storage: Path  # the nodes' RESNETCTL_STORAGE: a job given a bucket leaves it empty


@pytest.fixture(scope="module")
def s3_cluster(
    s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Cluster]:
    """`two_node_cluster` with the AWS variables (endpoint, fake keys) in both nodes'
    environment, and an `mlflow server --artifacts-destination s3://bucket/mlflow` on a bucket of
    its own; all killed by process group afterwards."""
    logs = tmp_path_factory.mktemp("s3-cluster")
    local_storage = logs / "node-storage"
    local_storage.mkdir()
    bucket = s3_server.new_bucket()
    server = Processes(logs)
    try:
        mlflow = start_mlflow(server, logs, f"s3://{bucket}/mlflow", s3_server.env)
        mlflow_up(mlflow, logs)  # first: its port taken before Ray's processes take theirs
        node_env = {**s3_server.env, "RESNETCTL_STORAGE": str(local_storage)}
        with two_node_cluster(logs, node_env) as nodes:
            yield S3Cluster(nodes, s3_server, bucket, mlflow, local_storage)
    finally:
        server.stop()
