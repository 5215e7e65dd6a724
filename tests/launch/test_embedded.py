"""The embedded Ray's settings: present in the environment while Ray starts (so that its daemons
and workers inherit them), left alone where the user set them, gone after `stop`. `ray.init` is
replaced by a recorder: what Ray does with the variables is measured in benchmarks/overhead.py."""

from __future__ import annotations

import os
from typing import Any

import pytest
import ray

from resnetctl.host import usable_cpus
from resnetctl.launch import embedded
from resnetctl.launch.local import LaunchError, run_local
from resnetctl.spec.loader import load_spec_text
from tests.launch.conftest import TINY_JOB


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def init(**options: Any) -> None:
        calls.append({"options": options, "env": dict(os.environ)})

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append({"shutdown": True}))
    for name in embedded.EMBEDDED_ENV:
        monkeypatch.delenv(name, raising=False)
    return calls


def test_settings_are_in_the_environment_while_ray_starts_and_gone_after_stop(
    fake_ray: list[dict[str, Any]],
) -> None:
    embedded.start(env_vars={"RESNETCTL_CACHE": "/data/cache"})
    (call,) = fake_ray
    for name, value in embedded.EMBEDDED_ENV.items():
        assert call["env"][name] == value
    options = call["options"]
    assert options["num_cpus"] == usable_cpus()
    assert options["runtime_env"] == {"env_vars": {"RESNETCTL_CACHE": "/data/cache"}}
    assert options["dashboard_host"] == "127.0.0.1"
    embedded.stop()
    assert fake_ray[-1] == {"shutdown": True}
    assert not set(embedded.EMBEDDED_ENV) & set(os.environ)


def test_a_variable_the_user_set_wins_and_survives_stop(
    fake_ray: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_TRAIN_METRICS_ENABLED", "1")
    embedded.start()
    assert fake_ray[0]["env"]["RAY_TRAIN_METRICS_ENABLED"] == "1"
    assert fake_ray[0]["env"]["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"
    assert fake_ray[0]["options"]["runtime_env"] is None
    embedded.stop()
    assert os.environ["RAY_TRAIN_METRICS_ENABLED"] == "1"
    assert "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER" not in os.environ


def test_a_failed_start_leaves_the_environment_as_it_was(
    fake_ray: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**options: Any) -> None:
        raise RuntimeError("no room for a GCS")

    monkeypatch.setattr(ray, "init", broken)
    before = dict(os.environ)
    with pytest.raises(RuntimeError, match="no room"):
        embedded.start()
    assert dict(os.environ) == before


def test_without_an_address_the_ray_is_a_new_private_one_with_its_own_state_api(
    fake_ray: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `ray.init()` without an address would join the cluster Ray's address file names; the state
    # API would ask that cluster (or fail among several) about our Ray Train controller.
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://10.0.0.9:8265")
    assert embedded.ensure_ray(None) is True
    (call,) = fake_ray
    options = call["options"]
    assert options["address"] == "local"
    port = options["dashboard_port"]
    assert isinstance(port, int) and port > 0
    assert call["env"]["RAY_API_SERVER_ADDRESS"] == f"http://127.0.0.1:{port}"
    embedded.stop()
    assert os.environ["RAY_API_SERVER_ADDRESS"] == "http://10.0.0.9:8265"


def test_with_an_address_ray_joins_that_cluster_as_it_is(fake_ray: list[dict[str, Any]]) -> None:
    before = dict(os.environ)
    assert embedded.ensure_ray("10.0.0.9:6379") is False
    (call,) = fake_ray
    # Its own settings, but quiet: the job's terminal and log hold the job's lines.
    assert call["options"] == {
        "address": "10.0.0.9:6379",
        "log_to_driver": True,
        "logging_level": "WARNING",
    }
    assert dict(os.environ) == before


def test_the_sigterm_handler_chosen_before_ray_init_stays(
    fake_ray: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    def ray_like_init(**options: Any) -> None:
        signal.signal(signal.SIGTERM, lambda signum, frame: None)  # as ray.init does

    def chosen(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ray, "init", ray_like_init)
    previous = signal.signal(signal.SIGTERM, chosen)
    try:
        embedded.ensure_ray(None)
        assert signal.getsignal(signal.SIGTERM) is chosen
        embedded.ensure_ray("10.0.0.9:6379")
        assert signal.getsignal(signal.SIGTERM) is chosen
    finally:
        signal.signal(signal.SIGTERM, previous)
        embedded.stop()


def test_tracking_store_is_complete_before_a_job_that_cannot_start_returns(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    # The store is prepared in a thread while Ray starts; a launch failure must not leave that
    # thread half-way through creating a sqlite database when the process exits.
    import threading
    import time

    import resnetctl.launch.local as local
    import resnetctl.tracking.run as tracking_run

    monkeypatch.chdir(tmp_path)
    release, done = threading.Event(), []

    def slow_prepare(uri: str) -> None:
        release.wait(5)
        time.sleep(0.2)  # still busy when the launch has failed
        done.append(uri)

    def no_room(spec: Any) -> bool:
        release.set()
        raise LaunchError("resources.workers: 2 workers need 2 CPUs; the embedded Ray has 1")

    monkeypatch.setattr(tracking_run, "prepare_store", slow_prepare)
    monkeypatch.setattr(local, "_ensure_ray", no_room)
    with pytest.raises(LaunchError, match="resources.workers"):
        run_local(load_spec_text(TINY_JOB, "job.yaml"))
    assert done == [f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"]


def test_the_dashboard_port_is_never_one_ray_gives_its_own_components(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The CI failure: the operating system handed out 52365 as a free port, Ray's dashboard
    # agent's default, and Ray refused to start with two components on one port.
    import socket

    from ray._private import ray_constants

    offered = iter(
        [
            ray_constants.DEFAULT_DASHBOARD_AGENT_LISTEN_PORT,
            ray_constants.DEFAULT_DASHBOARD_PORT,
            40123,
        ]
    )

    class Socket:
        def __init__(self, *args: Any) -> None:
            self.port = next(offered)

        def __enter__(self) -> Socket:
            return self

        def __exit__(self, *args: Any) -> None:
            pass

        def bind(self, address: tuple[str, int]) -> None:
            assert address == ("127.0.0.1", 0)

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(socket, "socket", Socket)
    assert embedded._free_port() == 40123


def test_without_a_token_the_embedded_ray_gets_one_that_never_reaches_home(
    fake_ray: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # Ray would generate one into ~/.ray/auth_token (when it finds none in $RAY_AUTH_TOKEN, the
    # file $RAY_AUTH_TOKEN_PATH names, or that file): a run leaves nothing in the home folder.
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    embedded.start()
    token = fake_ray[0]["env"]["RAY_AUTH_TOKEN"]
    assert len(token) == 64 and int(token, 16) >= 0
    embedded.stop()
    assert "RAY_AUTH_TOKEN" not in os.environ
    assert not (tmp_path / ".ray").exists()
    # A token the machine has is Ray's to use: nothing is set over it.
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("a" * 64)
    embedded.start()
    assert "RAY_AUTH_TOKEN" not in fake_ray[-1]["env"]
    embedded.stop()


def test_an_ended_rays_session_folder_and_its_links_go_and_nothing_else(tmp_path: Any) -> None:
    from pathlib import Path

    ray_temp = Path(tmp_path) / "ray"
    ours, other = ray_temp / "session_2026_ours", ray_temp / "session_2026_other"
    for session in (ours, other):
        (session / "logs").mkdir(parents=True)
        (session / "logs" / "raylet.out").write_text("log")
    (ray_temp / "session_latest").symlink_to(ours)
    (ray_temp / "prom_metrics_service_discovery.json").symlink_to(ours / "metrics.json")
    (ray_temp / "other_link").symlink_to(other)
    embedded.remove_session(ours)
    assert sorted(p.name for p in ray_temp.iterdir()) == ["other_link", "session_2026_other"]
    assert (other / "logs" / "raylet.out").read_text() == "log"
    embedded.remove_session(other)  # the last one: Ray's temp folder goes too
    assert not ray_temp.exists()
    embedded.remove_session(other)  # twice: nothing left to remove, no error
