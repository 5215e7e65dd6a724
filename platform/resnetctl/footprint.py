"""What resnetctl's processes leave on a machine: its one cache folder, and the defaults that keep
the libraries it runs (MLflow, matplotlib, onnxruntime, TorchInductor) from writing elsewhere in
the user's home or in the temp folder.

Standard library only: the package's `__init__` applies `TELEMETRY_OFF` and
`compile_cache_defaults()` in every process."""

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


def compile_cache_defaults() -> dict[str, str]:
    """TorchInductor's defaults for resnetctl: its cache (kernels compiled for `train.compile`,
    which the next run of the same network reuses) in `<cache>/torchinductor`, and no
    precompiled headers.

    Torch's own default is `$TMPDIR/torchinductor_<user>`, which it makes as soon as
    `torch._dynamo` is imported (every run does, to log its model as a `torch.export` program)
    and fills on a compile. The precompiled headers go to that temp folder whatever
    `TORCHINDUCTOR_CACHE_DIR` says; without them a cold compile of ResNet-20's training step on
    2 CPU cores took 47-60 s instead of 34-39 s, and the same network compiled again, from this
    cache, under 2 s (docs/benchmarks.md, `torch.compile`)."""
    return {
        "TORCHINDUCTOR_CACHE_DIR": str(cache_root() / "torchinductor"),
        "TORCHINDUCTOR_CPP_CACHE_PRECOMPILE_HEADERS": "0",
    }


def keep_compile_cache_out_of_temp() -> None:
    """Set `compile_cache_defaults()` where the environment does not say otherwise, before
    torch reads them (`torch._dynamo`'s import, TorchInductor's config)."""
    try:
        defaults = compile_cache_defaults()
    except RuntimeError:
        # No HOME and no passwd entry (a container run under an arbitrary uid): this runs on
        # the package's import, which must not fail for a cache's sake; torch keeps its own.
        return
    for name, value in defaults.items():
        os.environ.setdefault(name, value)


def matplotlib_config_dir() -> Path:
    """Where matplotlib keeps its config and font cache for resnetctl, unless $MPLCONFIGDIR
    names another folder (its own default is ~/.config/matplotlib and ~/.cache/matplotlib)."""
    return cache_root() / "matplotlib"
