"""AWS: the spot interruption notice and the rebalance recommendation, read from the instance
metadata service with IMDSv2 (a session token from a PUT, sent with every GET).

`spot/instance-action` answers 404 until EC2 decides to interrupt the instance, then
``{"action": "terminate" | "stop" | "hibernate", "time": "<UTC>"}``: the instance goes at that
time, about two minutes later (hibernation starts at once). AWS suggests reading it every 5 s;
the watcher reads every 2 s by default.

`events/recommendations/rebalance` answers 404 until EC2 finds the instance at elevated risk of
interruption, then ``{"noticeTime": "<UTC>"}``. It carries no deadline and is often not followed
by an interruption. A drain without a deadline would cost a running job a restart of its
workers elsewhere (Ray Train treats a drained node as preempted and moves off it within two
minutes), so by default the watcher only logs it; with `--drain-on-rebalance` it drains at once,
for those who prefer to move early.
"""

from __future__ import annotations

import json
from typing import ClassVar

from resnetctl.preemption.base import Settings
from resnetctl.preemption.metadata import Answer, MetadataError, request
from resnetctl.preemption.notice import Notice, parse_utc

DEFAULT_URL = "http://169.254.169.254"
TOKEN_PATH = "/latest/api/token"
ACTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
#: The longest session IMDSv2 grants; renewed a minute before it ends, or at once on a 401.
TOKEN_TTL_S = 21600
#: What EC2 promises when its notice's time cannot be read.
NOTICE_S = 120.0
ACTIONS = ("terminate", "stop", "hibernate")


class AwsSpotNotices:
    """EC2's spot interruption notice (final) and rebalance recommendation (advisory)."""

    name: ClassVar[str] = "aws"
    default_wait_s: ClassVar[float] = 2.0
    cadence: ClassVar[str] = "reads every {wait:g} s"
    holds_until_deadline: ClassVar[bool] = False
    takes: ClassVar[frozenset[str]] = frozenset({"metadata_url", "drain_on_rebalance"})

    def __init__(self, settings: Settings, timeout_s: float = 2.0) -> None:
        self.base = (settings.metadata_url or DEFAULT_URL).rstrip("/")
        self.clock = settings.clock
        self.sleep = settings.sleep
        self.timeout_s = timeout_s
        self._token: str | None = None
        self._token_until = 0.0
        self._reported: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> AwsSpotNotices:
        """The provider for `settings` (only `metadata_url`, `clock` and `sleep` matter)."""
        return cls(settings)

    def next_notice(self, wait_s: float) -> Notice | None:
        """Read both items once (the interruption first); sleep out the rest of `wait_s` when
        neither holds anything new."""
        started = self.clock()
        for notice in (self._instance_action(), self._rebalance()):
            if notice is not None and notice.message not in self._reported:
                self._reported.add(notice.message)
                return notice
        self.sleep(max(0.0, wait_s - (self.clock() - started)))
        return None

    def check(self) -> list[str]:
        """The token and both items as they are now."""
        self._token = None  # a fresh session: the check is about reaching IMDSv2 at all
        lines = [f"IMDSv2 at {self.base}: session token granted"]
        for path, notice in (
            (ACTION_PATH, self._instance_action()),
            (REBALANCE_PATH, self._rebalance()),
        ):
            item = path.removeprefix("/latest/meta-data/")
            lines.append(f"{item}: " + ("nothing (404)" if notice is None else notice.message))
        return lines

    # --- the two items --------------------------------------------------------------------

    def _instance_action(self) -> Notice | None:
        answer = self._get(ACTION_PATH)
        if answer.status == 404:
            return None
        received = self.clock()
        try:
            body = json.loads(answer.text)
            action, deadline = str(body["action"]), parse_utc(str(body["time"]))
        except (ValueError, KeyError, TypeError):
            # Unreadable, yet an interruption all the same: EC2's two minutes from now.
            return Notice(
                "aws spot/instance-action",
                f"spot interruption notice (unreadable, taken as {NOTICE_S:g} s): "
                f"{answer.text.strip()[:200]}",
                received + NOTICE_S,
            )
        verb = action if action in ACTIONS else f"{action} (an action unknown here)"
        return Notice(
            "aws spot/instance-action",
            f"EC2 spot interruption notice: {verb} at {body['time']}",
            deadline,
        )

    def _rebalance(self) -> Notice | None:
        answer = self._get(REBALANCE_PATH)
        if answer.status == 404:
            return None
        try:
            since = str(json.loads(answer.text)["noticeTime"])
        except (ValueError, KeyError, TypeError):
            since = answer.text.strip()[:200]
        return Notice(
            "aws events/recommendations/rebalance",
            f"EC2 rebalance recommendation (instance at elevated risk of interruption) since "
            f"{since}",
            None,
            final=False,
        )

    # --- IMDSv2 ---------------------------------------------------------------------------

    def _get(self, path: str) -> Answer:
        """GET `path` with a session token; a 401 (the token expired or the service restarted)
        gets one new token and one more try. A 200 or 404 is returned; anything else raises."""
        for _ in range(2):
            answer = request(
                "GET", self.base + path, {TOKEN_HEADER: self._session()}, self.timeout_s
            )
            if answer.status == 401:
                self._token = None
                continue
            if answer.status in (200, 404):
                return answer
            raise MetadataError(f"GET {self.base + path}: HTTP {answer.status}")
        raise MetadataError(f"GET {self.base + path}: HTTP 401 with a new session token")

    def _session(self) -> str:
        now = self.clock()
        if self._token is None or now >= self._token_until:
            answer = request(
                "PUT", self.base + TOKEN_PATH, {TTL_HEADER: str(TOKEN_TTL_S)}, self.timeout_s
            )
            if answer.status != 200 or not answer.text.strip():
                raise MetadataError(
                    f"PUT {self.base + TOKEN_PATH}: HTTP {answer.status} (no IMDSv2 token) "
                    f"{answer.text.strip()[:200]}"
                )
            self._token = answer.text.strip()
            granted = _int(answer.headers.get(TTL_HEADER.lower()), TOKEN_TTL_S)
            self._token_until = now + max(1, granted - 60)
        return self._token


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default
