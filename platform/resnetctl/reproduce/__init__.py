"""The paper's experiments as one command each, on top of `resnetctl.tune` sweeps: Fig. 6
(degradation of plain nets, none for ResNets) and Table 3 (shortcut options A, B, C).

    experiment = degradation(depths="20,56")          # plain and ResNet at each depth
    record = plan(experiment)                          # checks everything, starts nothing
    report = run_experiment(experiment, record)        # sweep, table, Fig. 6, Fig. 7, MLflow
"""

from resnetctl.reproduce.experiments import Experiment, degradation, shortcuts
from resnetctl.reproduce.results import NetResult
from resnetctl.reproduce.run import ExperimentReport, plan, run_experiment, summarise

__all__ = [
    "Experiment",
    "ExperimentReport",
    "NetResult",
    "degradation",
    "plan",
    "run_experiment",
    "shortcuts",
    "summarise",
]
