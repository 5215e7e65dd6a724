"""The providers by the name `--provider` takes. A new cloud is one more module with a class
like these and one more entry here."""

from __future__ import annotations

from resnetctl.preemption.aws import AwsSpotNotices
from resnetctl.preemption.base import Provider, Settings
from resnetctl.preemption.gcp import GcpPreemption
from resnetctl.preemption.kubernetes import PodTermination

PROVIDERS = {cls.name: cls for cls in (AwsSpotNotices, GcpPreemption, PodTermination)}


def provider_names() -> list[str]:
    """The names `--provider` accepts."""
    return sorted(PROVIDERS)


def make_provider(name: str, settings: Settings) -> Provider:
    """The provider called `name`, built from `settings`; KeyError names the known ones."""
    try:
        cls = PROVIDERS[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r}: one of {', '.join(provider_names())}") from None
    return cls.from_settings(settings)
