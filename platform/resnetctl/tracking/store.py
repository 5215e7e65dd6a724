"""Where runs are tracked: the tracking URI, its artifact root, and a reachability check."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from resnetctl.spec import JobSpec


class TrackingError(RuntimeError):
    """The tracking store cannot be used; raised before any training starts."""


def resolve_tracking_uri(spec: JobSpec, cwd: Path | None = None) -> str:
    """The spec's URI, else $MLFLOW_TRACKING_URI, else `sqlite:///<cwd>/mlflow.db`.

    The default path is absolute so that Ray workers, whose working directory differs, find it.
    """
    if spec.tracking.uri:
        return spec.tracking.uri
    return os.environ.get("MLFLOW_TRACKING_URI") or default_store_uri(cwd)


def default_store_uri(cwd: Path | None = None) -> str:
    """`sqlite:///<cwd>/mlflow.db`, absolute."""
    return f"sqlite:///{(cwd or Path.cwd()).resolve() / 'mlflow.db'}"


def default_artifact_root(uri: str, cwd: Path | None = None) -> str | None:
    """For a local sqlite store, artifacts go beside it in `mlartifacts/` (absolute URI)."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def is_local_store(uri: str) -> bool:
    """Whether the store is a file or sqlite database that only this machine can reach."""
    scheme = urlparse(uri).scheme
    return scheme in ("", "file", "sqlite")


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, with the URI in the message, when the store cannot be used."""
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=timeout) as response:  # noqa: S310
                if response.status != 200:
                    raise TrackingError(
                        f"MLflow server {uri} answered {response.status} on /health"
                    )
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({reason}); start it or set "
                "tracking.uri / MLFLOW_TRACKING_URI"
            ) from None
    elif scheme == "sqlite":
        # sqlite:///rel.db is relative, sqlite:////abs.db absolute: the path follows "///".
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise TrackingError(f"tracking store {uri}: folder {folder} is missing or not writable")
    elif scheme in ("", "file"):
        folder = Path(urlparse(uri).path or uri)
        parent = folder if folder.exists() else folder.parent
        if not os.access(parent, os.W_OK):
            raise TrackingError(f"tracking store {uri}: {parent} is not writable")
