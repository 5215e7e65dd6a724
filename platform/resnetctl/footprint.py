"""What resnetctl's processes leave on a machine: its one cache folder, and the defaults that keep
the libraries it runs (MLflow, matplotlib, onnxruntime) from writing elsewhere in the user's home.

Standard library only: the package's `__init__` applies `TELEMETRY_OFF` in every process."""

from __future__ import annotations

import os
from pathlib import Path

#: Usage telemetry off, unless the user set the variable themselves: MLflow 3 reports from every
#: process that imports it and keeps an installation id in ~/.config/mlflow/telemetry.json
#: (`MLFLOW_DISABLE_TELEMETRY=false` turns it back on); onnxruntime (`resnetctl export`'s check of
#: an ONNX file) keeps a device id and an event store in ~/.cache/Microsoft/DeveloperTools.
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "ORT_DISABLE_TELEMETRY": "1"}


def cache_root(override: Path | None = None) -> Path:
    """The cache folder: `override`, else `$RESNETCTL_CACHE`, `$XDG_CACHE_HOME/resnetctl` or
    `~/.cache/resnetctl`."""
    if override is not None:
        return Path(override).expanduser()
    if os.environ.get("RESNETCTL_CACHE"):
        return Path(os.environ["RESNETCTL_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "resnetctl"
    return Path.home() / ".cache" / "resnetctl"


def turn_off_telemetry() -> None:
    """Set `TELEMETRY_OFF` where the environment does not say otherwise. MLflow reads it when it
    is imported, so this runs before any import of MLflow (in the package's `__init__`)."""
    for name, value in TELEMETRY_OFF.items():
        os.environ.setdefault(name, value)


def matplotlib_config_dir() -> Path:
    """Where matplotlib keeps its config and font cache for resnetctl, unless $MPLCONFIGDIR
    names another folder (its own default is ~/.config/matplotlib and ~/.cache/matplotlib)."""
    return cache_root() / "matplotlib"
