"""The job spec: typed, validated configuration of a training job."""

from resnetctl.spec.errors import SpecError, SpecIssue
from resnetctl.spec.job import JobSpec
from resnetctl.spec.loader import dump_spec, load_spec, parse_overrides

__all__ = ["JobSpec", "SpecError", "SpecIssue", "dump_spec", "load_spec", "parse_overrides"]
