"""resnetctl: train the ResNets of He et al. (CVPR 2016) from a laptop CPU to GPU clusters."""

from importlib.metadata import PackageNotFoundError, version

from resnetctl.footprint import keep_compile_cache_out_of_temp, turn_off_telemetry

try:
    __version__ = version("resnetctl")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# Here, not in the CLI: every resnetctl process imports this package before MLflow and torch's
# compiler, the CLI and a job's driver as much as the Ray workers that load its training loop on
# other nodes.
turn_off_telemetry()
keep_compile_cache_out_of_temp()
