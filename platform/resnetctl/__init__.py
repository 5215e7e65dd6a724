"""resnetctl: train the ResNets of He et al. (CVPR 2016) from a laptop CPU to GPU clusters."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("resnetctl")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
