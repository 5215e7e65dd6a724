"""Hyperparameter sweeps with Ray Tune: the paper's depth, shortcut and plain/residual
comparisons (and any spec field by dotted path), one Ray Train run per trial, tracked as MLflow
child runs under one parent run per sweep.

    record = plan_sweep(SweepRequest(depths="18,34,50"))   # checks everything, starts nothing
    outcome = run_sweep(record)                             # Tuner.fit, MLflow, ranking

By stage: `plan` (what to run: the sweep record), `run` (Ray Tune), `results` (ranking and the
MLflow parent run); `record`, `space` and `facts` are the data they share.
"""

from resnetctl.tune.plan import SweepRequest, load_sweep, plan_sweep
from resnetctl.tune.record import SweepError, SweepRecord
from resnetctl.tune.results import SweepOutcome
from resnetctl.tune.run import run_sweep

__all__ = [
    "SweepError",
    "SweepOutcome",
    "SweepRecord",
    "SweepRequest",
    "load_sweep",
    "plan_sweep",
    "run_sweep",
]
