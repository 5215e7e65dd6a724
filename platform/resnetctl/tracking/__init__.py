"""MLflow tracking: one run per job, written by one process."""
