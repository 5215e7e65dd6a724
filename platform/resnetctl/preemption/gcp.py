"""Google Cloud: a Spot (or preemptible) VM's preemption, read from the metadata server's
`instance/preempted` ("FALSE", then "TRUE" once Compute Engine preempts the VM).

The VM gets 30 seconds from then: Compute Engine sends the guest an ACPI soft-off at once and
powers it off 30 s later. The watcher waits on the value with the metadata server's hanging GET
(`wait_for_change=true`), which answers the moment the value changes. It passes the ETag of the
last answer (`last_etag`), so that a change between two requests is answered at once rather
than missed, and a `timeout_sec`, so that it checks now and then that its Ray node still runs.
"""

from __future__ import annotations

import urllib.parse
from typing import ClassVar

from resnetctl.preemption.base import Settings
from resnetctl.preemption.metadata import Answer, MetadataError, request
from resnetctl.preemption.notice import Notice

DEFAULT_URL = "http://metadata.google.internal"
PREEMPTED_PATH = "/computeMetadata/v1/instance/preempted"
#: Without it the metadata server answers 403.
FLAVOR = {"Metadata-Flavor": "Google"}
#: From the preemption notice to the power-off.
NOTICE_S = 30.0


class GcpPreemption:
    """Compute Engine's preemption of this VM (final)."""

    name: ClassVar[str] = "gcp"
    default_wait_s: ClassVar[float] = 60.0
    cadence: ClassVar[str] = "hanging reads of up to {wait:g} s"
    holds_until_deadline: ClassVar[bool] = False
    takes: ClassVar[frozenset[str]] = frozenset({"metadata_url"})

    def __init__(self, settings: Settings) -> None:
        self.base = (settings.metadata_url or DEFAULT_URL).rstrip("/")
        self.clock = settings.clock
        self.sleep = settings.sleep
        self._etag: str | None = None
        self._reported = False

    @classmethod
    def from_settings(cls, settings: Settings) -> GcpPreemption:
        """The provider for `settings` (only `metadata_url`, `clock` and `sleep` matter)."""
        return cls(settings)

    def next_notice(self, wait_s: float) -> Notice | None:
        """The first read returns at once; the next ones wait up to `wait_s` for a change."""
        if self._reported:
            self.sleep(wait_s)
            return None
        if self._etag is None:
            answer = self._get({}, timeout_s=10.0)
        else:
            query = {"wait_for_change": "true", "last_etag": self._etag}
            query["timeout_sec"] = str(max(1, int(wait_s)))
            answer = self._get(query, timeout_s=wait_s + 10.0)
        self._etag = answer.headers.get("etag") or self._etag
        if answer.text.strip().upper() != "TRUE":
            return None
        self._reported = True
        return Notice(
            "gcp instance/preempted",
            f"Compute Engine preempted this VM (instance/preempted = {answer.text.strip()}); "
            f"it is powered off {NOTICE_S:g} s after the notice",
            self.clock() + NOTICE_S,
        )

    def check(self) -> list[str]:
        """The value as it is now."""
        answer = self._get({}, timeout_s=10.0)
        return [f"metadata server at {self.base}: instance/preempted = {answer.text.strip()}"]

    def _get(self, query: dict[str, str], timeout_s: float) -> Answer:
        url = self.base + PREEMPTED_PATH
        if query:
            url += "?" + urllib.parse.urlencode(query)
        answer = request("GET", url, FLAVOR, timeout_s)
        if answer.status != 200:
            raise MetadataError(f"GET {url}: HTTP {answer.status} {answer.text.strip()[:200]}")
        return answer
