"""The kinds of event the Ray Train controller sends the driver's progress view through the
job's progress queue: written by `tracking.callback` and `launch.hang`, drawn by
`launch.progress`. Step events from rank 0 have no kind."""

#: An epoch every rank finished.
EPOCH_EVENT = "epoch"
#: Workers that failed.
WORKER_ERROR_EVENT = "worker_error"
#: A line to show as it is (`line`): the verdict on a hang, a notice and the checkpoint it
#: caused, a restart and what it cost.
NOTE_EVENT = "note"
