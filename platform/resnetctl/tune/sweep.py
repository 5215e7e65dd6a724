"""What sweeps launched before `tune` was split into plan / run / results saved by reference.

Tune pickles the trial name and directory creators of a sweep into its `tuner.pkl`, as
`resnetctl.tune.sweep._trial_name` and `_trial_dirname` for those sweeps; `--resume` of one
unpickles them from here.
"""

from resnetctl.tune.run import trial_dirname as _trial_dirname
from resnetctl.tune.run import trial_name as _trial_name

__all__ = ["_trial_dirname", "_trial_name"]
