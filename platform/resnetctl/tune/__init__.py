"""Hyperparameter sweeps with Ray Tune: the paper's depth, shortcut and plain/residual
comparisons (and any spec field by dotted path), one Ray Train run per trial, tracked as MLflow
child runs under one parent run per sweep.

    record = plan_sweep(SweepRequest(depths="18,34,50"))   # checks everything, starts nothing
    outcome = run_sweep(record)                             # Tuner.fit, MLflow, ranking
"""

from resnetctl.tune.record import SweepRecord
from resnetctl.tune.sweep import (
    SweepError,
    SweepOutcome,
    SweepRequest,
    load_sweep,
    plan_sweep,
    run_sweep,
)

__all__ = [
    "SweepError",
    "SweepOutcome",
    "SweepRecord",
    "SweepRequest",
    "load_sweep",
    "plan_sweep",
    "run_sweep",
]
