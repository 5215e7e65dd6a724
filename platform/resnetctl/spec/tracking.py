"""`tracking`: where MLflow records the run."""

from __future__ import annotations

from pydantic import Field, field_validator

from resnetctl.spec.base import StrictModel


class TrackingSpec(StrictModel):
    """MLflow destination and labels of the run."""

    uri: str | None = Field(
        None,
        description="MLflow tracking URI; default: $MLFLOW_TRACKING_URI, else a sqlite store "
        "`mlflow.db` with artifacts in `mlartifacts/` in the working directory.",
    )
    experiment: str = Field("resnetctl", min_length=1, description="MLflow experiment name.")
    run_name: str | None = Field(
        None,
        min_length=1,
        description="MLflow run name; default: the resnetctl run name (`JOB-YYYYMMDD-HHMMSS`, "
        "the name `--resume`, `list` and `status` take).",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Extra tags on the run.")
    registered_model: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Model Registry name the best checkpoint of every finished run is "
        "registered under (one version per run; alias `best` moves to a version only when it "
        "beats the aliased one by `checkpoint.metric` on the same validation data); default: "
        "the job name.",
    )

    system_metrics_interval_s: float = Field(
        10.0,
        ge=0.0,
        le=3600.0,
        description="Seconds between two samples of each node's CPU, memory, disk, network and "
        "GPU use, logged as MLflow system metrics (`system/node-<id>/...`); 0 turns them off.",
    )

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str | None) -> str | None:
        if uri is None:
            return None
        scheme = uri.split(":", 1)[0] if ":" in uri else "file"
        known = {"http", "https", "sqlite", "file", "databricks", "postgresql", "mysql", "mssql"}
        if scheme not in known:
            raise ValueError(
                f"unsupported scheme {scheme!r} in {uri!r}; use one of {sorted(known)}"
            )
        return uri
