"""Turning a validated `JobSpec` into a running job: the plan, and the Ray launchers."""
