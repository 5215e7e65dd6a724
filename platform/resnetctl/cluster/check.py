"""Check a cluster config as `resnetctl cluster validate` does: the file on its own (`parse`),
then whether it can supply each job given (`place`)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from resnetctl.cluster.config import ConfigReport
from resnetctl.cluster.parse import parse_config
from resnetctl.cluster.place import plan_placement

if TYPE_CHECKING:
    from resnetctl.spec import JobSpec


def check_config(path: str | os.PathLike[str], jobs: Iterable[JobSpec] = ()) -> ConfigReport:
    """Check a cluster config, and that it can supply every job in `jobs`.

    Never raises for a bad config: the report lists every problem found.
    """
    report = parse_config(path)
    if report.config is not None and not report.errors:
        for job in jobs:
            report.issues.extend(plan_placement(job, report.config).problems)
    return report
