"""Shared fixtures: an isolated cache, tracking store, run storage and Ray token for every test.

Nothing here reads or writes the user's home folder: the Ray auth token every test uses (the
embedded Ray of `submit`, `ray start`, the Jobs client, `ray list`) is made in a temporary folder
and passed by `RAY_AUTH_TOKEN_PATH`, and `test_the_suite_left_the_users_ray_folder_alone` (run
last) fails the run if `~/.ray` changed while it ran.

The suite has a temp folder of its own (`TMPDIR`, inherited by every process it starts: the
CLI, Ray and its workers), so that what it leaves there can be told from what other programs on
the machine leave: `test_the_suite_left_nothing_in_the_temp_folder` (run last) lists it, and
the folder is removed after a session that passed.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Imported before any test module, some of which import MLflow ahead of resnetctl (imports
# sorted by group): the package's __init__ sets resnetctl's defaults in the suite's process, as
# in every resnetctl process, before MLflow is imported (resnetctl.footprint).
from resnetctl.footprint import cache_root

ROOT = Path(__file__).resolve().parents[1]
JOBS = ROOT / "jobs"
USER_RAY_DIR = Path.home() / ".ray"
_USER_CONFIG = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
_USER_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
#: The user's resnetctl cache: read before the session points $RESNETCTL_CACHE at its own.
USER_CACHE_DIR = cache_root()
#: Where MLflow and onnxruntime (their telemetry ids) and matplotlib (config, font cache) write by
#: default: resnetctl turns the telemetry off and points matplotlib at its own cache
#: (resnetctl.footprint).
USER_LIBRARY_DIRS = (
    _USER_CONFIG / "mlflow",
    _USER_CACHE / "Microsoft",
    _USER_CONFIG / "matplotlib",
    _USER_CACHE / "matplotlib",
)
RAY_TOKEN_VARIABLES = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")
#: The suite's temp folder, for pytest-xdist workers to share their controller's.
SUITE_TMPDIR_VARIABLE = "RESNETCTL_SUITE_TMPDIR"
#: TorchInductor's cache of the session (`TORCHINDUCTOR_CACHE_DIR`), in the suite's temp folder.
SUITE_COMPILE_CACHE = "torchinductor"


def ray_folder_state(folder: Path = USER_RAY_DIR) -> dict[str, str] | None:
    """Every file under `folder` with a digest of its bytes; None when the folder is absent."""
    if not folder.exists():
        return None
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def cache_folder_state(folder: Path = USER_CACHE_DIR) -> dict[str, str] | None:
    """Every file under `folder` with its size and modification time (a data cache can be
    large: no digests); None when the folder is absent."""
    if not folder.exists():
        return None
    state = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            info = path.stat()
            state[str(path.relative_to(folder))] = f"{info.st_size}:{info.st_mtime_ns}"
    return state


def library_folders_state() -> dict[str, dict[str, str] | None]:
    """`cache_folder_state` of each of `USER_LIBRARY_DIRS`."""
    return {str(folder): cache_folder_state(folder) for folder in USER_LIBRARY_DIRS}


def pytest_configure(config: pytest.Config) -> None:
    # Taken before any test (or fixture) runs; compared by the last test of the session.
    config.stash[_HOME_RAY] = ray_folder_state()
    config.stash[_HOME_CACHE] = cache_folder_state()
    config.stash[_HOME_LIBRARIES] = library_folders_state()
    if is_xdist_worker(config):
        # A pytest-xdist worker shares its controller's temp folder and Ray token (inherited in
        # the environment): the controller checks and removes them when every worker is done.
        config.stash[_SUITE_TMPDIR] = Path(os.environ[SUITE_TMPDIR_VARIABLE])
        return
    # Short, under /tmp: Ray's Unix sockets live below it and their paths must stay short.
    temp = Path(tempfile.mkdtemp(prefix="rsuite-", dir="/tmp"))
    config.stash[_SAVED_TMPDIR] = os.environ.get("TMPDIR")
    config.stash[_SUITE_TMPDIR] = temp
    os.environ["TMPDIR"] = str(temp)
    os.environ[SUITE_TMPDIR_VARIABLE] = str(temp)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    # What the session sets below, put back when it ends.
    config.stash[_SAVED_ENV] = {
        name: os.environ.get(name) for name in (*RAY_TOKEN_VARIABLES, "TORCHINDUCTOR_CACHE_DIR")
    }
    # TorchInductor's cache: the suite's own, in every process it starts. The package's import
    # (in this process, before this hook) pointed it at the user's cache, which tests leave
    # alone; tests/test_footprint.py checks that default in a process of its own.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(temp / SUITE_COMPILE_CACHE)
    # A token of the suite's own for every Ray it starts or talks to: set before any fixture
    # (also module- and session-scoped ones) and inherited by every subprocess.
    folder = Path(tempfile.mkdtemp(prefix="resnetctl-ray-token-"))
    token = folder / "auth_token"
    token.write_text(secrets.token_hex(32))
    config.stash[_TOKEN_DIR] = folder
    os.environ.pop("RAY_AUTH_TOKEN", None)  # it would win over the path
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)


def is_xdist_worker(config: pytest.Config) -> bool:
    """Whether this process is a pytest-xdist worker (its controller runs the session)."""
    return hasattr(config, "workerinput")


def runs_in_parallel(config: pytest.Config) -> bool:
    """Whether the tests are spread over pytest-xdist workers (this is their controller or one
    of them): no test then runs after every other, so the controller checks what a `last`
    test checks, at the session's end (`pytest_sessionfinish`)."""
    return is_xdist_worker(config) or bool(getattr(config.option, "numprocesses", None))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if runs_in_parallel(config) and not is_xdist_worker(config):
        from tests.test_home_untouched import (
            home_cache_changes,
            home_library_changes,
            home_ray_changes,
        )
        from tests.test_temp_untouched import left_behind

        folder = config.stash[_SUITE_TMPDIR]
        problems = [
            *(
                [f"left in the suite's temp folder {folder}: {left_behind(folder)}"]
                if left_behind(folder)
                else []
            ),
            *home_ray_changes(config.stash[_HOME_RAY]),
            *home_cache_changes(config.stash[_HOME_CACHE]),
            *home_library_changes(config.stash[_HOME_LIBRARIES]),
        ]
        if problems:
            print("\n" + "\n".join(f"session check failed: {p}" for p in problems))
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            exitstatus = session.exitstatus
    config.stash[_PASSED] = exitstatus == 0


def pytest_unconfigure(config: pytest.Config) -> None:
    if is_xdist_worker(config):
        return  # the controller's folder and token
    for name, value in config.stash.get(_SAVED_ENV, {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    folder = config.stash.get(_TOKEN_DIR, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
    temp = config.stash.get(_SUITE_TMPDIR, None)
    if temp is not None:
        saved = config.stash.get(_SAVED_TMPDIR, None)
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved
        tempfile.tempdir = None
        if config.stash.get(_PASSED, False):
            shutil.rmtree(temp, ignore_errors=True)
        else:  # kept for a look at the failed tests' files (pytest's tmp_path is in it)
            print(f"\nthe suite's temp folder is kept: {temp}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests marked `last` check what the whole session did: run them after everything else.
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
    if runs_in_parallel(config):
        checked = pytest.mark.skip(reason="in parallel, the controller checks this at the end")
        for item in items:
            if item.get_closest_marker("last") is not None:
                item.add_marker(checked)


_HOME_RAY = pytest.StashKey[dict[str, str] | None]()
_HOME_CACHE = pytest.StashKey[dict[str, str] | None]()
_HOME_LIBRARIES = pytest.StashKey[dict[str, dict[str, str] | None]]()
_TOKEN_DIR = pytest.StashKey[Path]()
_SAVED_ENV = pytest.StashKey[dict[str, str | None]]()
_SUITE_TMPDIR = pytest.StashKey[Path]()
_SAVED_TMPDIR = pytest.StashKey[str | None]()
_PASSED = pytest.StashKey[bool]()


def suite_temp_folder(config: pytest.Config) -> Path:
    """The temp folder of this session (`TMPDIR` of every process it starts)."""
    return config.stash[_SUITE_TMPDIR]


@pytest.fixture(scope="session")
def ray_token() -> str:
    """The suite's Ray auth token (the content of `$RAY_AUTH_TOKEN_PATH`)."""
    return Path(os.environ["RAY_AUTH_TOKEN_PATH"]).read_text().strip()


@pytest.fixture(scope="session")
def home_ray_state_at_start(pytestconfig: pytest.Config) -> dict[str, str] | None:
    """`~/.ray` as it was before the session started (None: absent)."""
    return pytestconfig.stash[_HOME_RAY]


@pytest.fixture(scope="session")
def home_cache_state_at_start(pytestconfig: pytest.Config) -> dict[str, str] | None:
    """resnetctl's default data cache (`~/.cache/resnetctl`) as it was before the session."""
    return pytestconfig.stash[_HOME_CACHE]


@pytest.fixture(scope="session")
def home_library_state_at_start(
    pytestconfig: pytest.Config,
) -> dict[str, dict[str, str] | None]:
    """USER_LIBRARY_DIRS as they were before the session."""
    return pytestconfig.stash[_HOME_LIBRARIES]


@pytest.fixture(scope="session", autouse=True)
def _suite_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Package- and module-scoped fixtures (a trained run, a cluster's data set) are set up
    # before the function-scoped `_isolated`: they too read and write the suite's cache, never
    # the user's (~/.cache/resnetctl).
    saved = os.environ.get("RESNETCTL_CACHE")
    os.environ["RESNETCTL_CACHE"] = str(tmp_path_factory.getbasetemp() / "cache")
    yield
    if saved is None:
        os.environ.pop("RESNETCTL_CACHE", None)
    else:
        os.environ["RESNETCTL_CACHE"] = saved


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never write into the user's cache, MLflow store or run storage.
    cache = tmp_path_factory.getbasetemp() / "cache"  # shared: generated data sets are reused
    monkeypatch.setenv("RESNETCTL_CACHE", str(cache))
    monkeypatch.setenv("RESNETCTL_STORAGE", str(tmp_path_factory.mktemp("runs")))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@pytest.fixture(autouse=True)
def _ray_auth_mode_restored() -> Iterator[None]:
    # `ray.init` of a new local cluster sets RAY_AUTH_MODE=token in this process's environment;
    # leave the next test the environment this one found.
    before = os.environ.get("RAY_AUTH_MODE")
    yield
    if before is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = before
