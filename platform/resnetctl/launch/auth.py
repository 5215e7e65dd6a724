"""Ray's token authentication as a client of a cluster sees it: where the token is, and what to
say when it is missing.

Ray 2.60 starts clusters with token authentication by default: every node and client shares one
token. Ray's own clients find it in `$RAY_AUTH_TOKEN`, the file named by `$RAY_AUTH_TOKEN_PATH`,
or `~/.ray/auth_token`, but send it only when `RAY_AUTH_MODE=token` was in the environment when
Ray was imported. resnetctl looks in the same three places itself and passes the token
explicitly, so a machine that has the token works whatever its environment, and a machine that
has none gets one line saying how to get it instead of a traceback after half a minute of
retries.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

#: Where Ray looks for the token, in Ray's order; the first that holds one wins.
TOKEN_VARIABLE = "RAY_AUTH_TOKEN"
TOKEN_PATH_VARIABLE = "RAY_AUTH_TOKEN_PATH"
MODE_VARIABLE = "RAY_AUTH_MODE"


def default_token_file() -> Path:
    """`~/.ray/auth_token`, the file `ray get-auth-token --generate` writes."""
    return Path.home() / ".ray" / "auth_token"


def find_token() -> str | None:
    """The Ray auth token this machine has, or None."""
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if token:
        return token
    path = os.environ.get(TOKEN_PATH_VARIABLE)
    for candidate in ([Path(path).expanduser()] if path else []) + [default_token_file()]:
        try:
            token = candidate.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if token:
            return token
    return None


def auth_disabled() -> bool:
    """True when the user said the cluster runs without token authentication."""
    return os.environ.get(MODE_VARIABLE, "").strip().lower() == "disabled"


def http_headers() -> dict[str, str]:
    """The `Authorization` header for Ray's HTTP APIs (dashboard, Jobs), when a token exists."""
    token = None if auth_disabled() else find_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


class ClusterAccessError(RuntimeError):
    """This machine cannot use the cluster: nothing listens there, or it refuses our token."""


def enable_for_ray_clients() -> None:
    """Make Ray's own clients in this process (and its children) send the token this machine
    has: `ray.init(address=...)` reads `RAY_AUTH_MODE` and the token from the environment."""
    token = None if auth_disabled() else find_token()
    if token and MODE_VARIABLE not in os.environ:
        os.environ[MODE_VARIABLE] = "token"
        import sys

        if "ray._raylet" in sys.modules:  # Ray caches its config at import: read it anew
            from ray._raylet import Config

            Config.initialize("")


def check_gcs_access(address: str) -> None:
    """Raise `ClusterAccessError` with one line when the cluster whose GCS is at `address`
    (`host:port`, as `ray.init(address=...)` takes it) cannot be joined from here.

    Costs one TCP connect and one GCS call (well under a second) where Ray's own `ray.init`
    retries for 30 s and then raises a bare `ConnectionError`, or aborts the process when
    `RAY_AUTH_MODE=token` and no token exists.
    """
    import socket

    from ray._private.services import canonicalize_bootstrap_address

    gcs = canonicalize_bootstrap_address(address)
    if gcs is None:  # "local": nothing to join
        return
    host, _, port = gcs.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise ClusterAccessError(
            f"nothing answers at the Ray cluster address {address} ({gcs}: {exc}); is the "
            "head running, and is this its GCS address (host:port of `ray start --head "
            "--port`)? For a head started with --node-ip-address=127.0.0.1, also set "
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 here"
        ) from None
    if auth_disabled():
        return
    token = find_token()
    if token is None and os.environ.get(MODE_VARIABLE, "").strip().lower() == "token":
        raise ClusterAccessError(missing_token_message(address))
    enable_for_ray_clients()
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    try:
        with _stderr_silenced():  # Ray's C++ client logs every refused attempt on fd 2
            GcsClient(address=gcs, cluster_id=None)
    except AuthenticationError:
        message = wrong_token_message if token else missing_token_message
        raise ClusterAccessError(message(address)) from None


def missing_token_message(address: str) -> str:
    """One line: what is missing and the commands that fix it."""
    return (
        f"the Ray cluster at {address} needs its auth token and this machine has none "
        f"(looked in ${TOKEN_VARIABLE}, ${TOKEN_PATH_VARIABLE} and {_home(default_token_file())})"
        ": run `ray get-auth-token` on the head node and `export RAY_AUTH_TOKEN=<the token it "
        "prints>` here (or save it as ~/.ray/auth_token); for a cluster started with "
        "RAY_AUTH_MODE=disabled, set RAY_AUTH_MODE=disabled here too"
    )


def wrong_token_message(address: str) -> str:
    """One line for a token the cluster refuses."""
    return (
        f"the Ray cluster at {address} refused this machine's auth token: it is not the "
        "cluster's; run `ray get-auth-token` on the head node and `export RAY_AUTH_TOKEN=<the "
        "token it prints>` here"
    )


def is_auth_failure(text: str) -> bool:
    """Whether an error text from Ray's clients is an authentication refusal."""
    lowered = text.lower()
    return any(
        word in lowered
        for word in ("unauthorized", "unauthenticated", "authentication token", "invalidauthtoken")
    )


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _home(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home) :] if text.startswith(home) else text
