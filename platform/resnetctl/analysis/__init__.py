"""Analyses of trained networks in the paper's terms: the layer responses of Fig. 7.

Typical use::

    trained = load_trained("3f2a…")                 # MLflow run id, run name or checkpoint dir
    result = measure(trained)                        # std of every 3x3 layer after BN, before ReLU
    write_report([result], Path("out"))              # CSV + PNG, logged to the run in MLflow
"""

from resnetctl.analysis.report import RunResponses, measure, write_report
from resnetctl.analysis.responses import (
    AnalysisError,
    LayerResponse,
    ResponseLayer,
    layer_responses,
    response_layers,
    sorted_stds,
)
from resnetctl.analysis.targets import TrainedModel, load_trained

__all__ = [
    "AnalysisError",
    "LayerResponse",
    "ResponseLayer",
    "RunResponses",
    "TrainedModel",
    "layer_responses",
    "load_trained",
    "measure",
    "response_layers",
    "sorted_stds",
    "write_report",
]
