"""Fake metadata services on 127.0.0.1 that answer as the clouds document theirs, for the
watcher to read: AWS's IMDSv2 and Compute Engine's metadata server.

- AWS (IMDSv2 required): `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds`
  (1-21600) grants a session token (and echoes the TTL header); every GET without a valid,
  unexpired token gets 401; a request carrying `X-Forwarded-For` is refused (403).
  `spot/instance-action` and `events/recommendations/rebalance` answer 404 until the test
  announces them, then ``{"action": ..., "time": ...}`` and ``{"noticeTime": ...}``.
- GCP: every request needs `Metadata-Flavor: Google` (else 403) and gets it back, with an
  `ETag`. `instance/preempted` is "FALSE" until the test preempts, then "TRUE";
  `?wait_for_change=true` hangs until the value changes (at once when `last_etag` differs from
  the current ETag), or `timeout_sec` passes, then answers the current value.

Both run in a thread of the test process (`with FakeImds() as imds:`), can fail the next N
requests (`fail_next`: HTTP 503, or a connection closed without an answer), and record what
they were asked.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN_PATH = "/latest/api/token"
ACTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
PREEMPTED_PATH = "/computeMetadata/v1/instance/preempted"


def iso_utc(seconds: float) -> str:
    """An epoch time as AWS writes it: ``2026-12-06T08:22:00Z`` (whole seconds)."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Seen:
    """One request a fake received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float


@dataclass
class _Failures:
    count: int = 0
    kind: str = "503"


class _Server:
    """A ThreadingHTTPServer in a daemon thread, with request records and failure injection."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.seen: list[Seen] = []
        self.closing = False
        self._failures = _Failures()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.closing = True
            self.lock.notify_all()  # release hanging requests
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def fail_next(self, count: int, kind: str = "503") -> None:
        """Answer the next `count` requests with HTTP 503 (`kind="503"`) or by closing the
        connection without an answer (`kind="drop"`)."""
        with self.lock:
            self._failures = _Failures(count, kind)

    def requests(self, path: str | None = None) -> list[Seen]:
        """What was asked so far (of `path` only, if given)."""
        with self.lock:
            return [s for s in self.seen if path is None or s.path == path]

    def answer(self, handler: BaseHTTPRequestHandler, seen: Seen) -> tuple[int, dict, str]:
        raise NotImplementedError

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _serve(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query))
                headers = {k.lower(): v for k, v in self.headers.items()}
                seen = Seen(self.command, parts.path, query, headers, time.time())
                with server.lock:
                    server.seen.append(seen)
                    failure = server._failures.count > 0
                    kind = server._failures.kind
                    server._failures.count -= int(failure)
                if failure and kind == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if failure:
                    status, extra, body = 503, {}, "Service Unavailable"
                else:
                    status, extra, body = server.answer(self, seen)
                data = body.encode()
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = _serve  # noqa: N815

        return Handler


class FakeImds(_Server):
    """EC2's instance metadata service with IMDSv2 required."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: dict[str, float] = {}  # token -> expiry (time.time())
        self.action: dict[str, str] | None = None
        self.rebalance: dict[str, str] | None = None
        self.announced_at: float | None = None

    def interrupt(self, action: str = "terminate", in_s: float = 120.0) -> float:
        """Announce a spot interruption `in_s` seconds from now (AWS states whole seconds);
        returns the announced time."""
        with self.lock:
            self.announced_at = time.time()
            at = float(int(self.announced_at + in_s))
            self.action = {"action": action, "time": iso_utc(at)}
            return at

    def recommend_rebalance(self) -> None:
        """Post a rebalance recommendation."""
        with self.lock:
            self.rebalance = {"noticeTime": iso_utc(time.time())}

    def expire_tokens(self) -> None:
        """End every session, as when a token's TTL runs out."""
        with self.lock:
            self.tokens.clear()

    def answer(self, handler: BaseHTTPRequestHandler, seen: Seen) -> tuple[int, dict, str]:
        if "x-forwarded-for" in seen.headers:
            return 403, {}, "Forbidden"
        if seen.method == "PUT":
            if seen.path != TOKEN_PATH:
                return 403, {}, "Forbidden"
            try:
                ttl = int(seen.headers["x-aws-ec2-metadata-token-ttl-seconds"])
            except (KeyError, ValueError):
                return 400, {}, "Bad Request"
            if not 1 <= ttl <= 21600:
                return 400, {}, "Bad Request"
            token = secrets.token_urlsafe(32)
            with self.lock:
                self.tokens[token] = time.time() + ttl
            return 200, {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)}, token
        with self.lock:
            expiry = self.tokens.get(seen.headers.get("x-aws-ec2-metadata-token", ""))
            if expiry is None or expiry <= time.time():
                return 401, {}, "Unauthorized"
            item = {ACTION_PATH: self.action, REBALANCE_PATH: self.rebalance}.get(seen.path)
        if item is None:
            return 404, {"Content-Type": "text/html"}, "<html>404 - Not Found</html>"
        return 200, {"Content-Type": "text/plain"}, json.dumps(item)


class FakeGceMetadata(_Server):
    """Compute Engine's metadata server, `instance/preempted` only."""

    def __init__(self) -> None:
        super().__init__()
        self.value = "FALSE"
        self.preempted_at: float | None = None

    def preempt(self) -> float:
        """Preempt the VM now: the value turns "TRUE" and hanging reads answer; returns when."""
        with self.lock:
            self.value = "TRUE"
            self.preempted_at = time.time()
            self.lock.notify_all()
            return self.preempted_at

    def etag(self) -> str:
        return hashlib.sha256(self.value.encode()).hexdigest()[:16]

    def answer(self, handler: BaseHTTPRequestHandler, seen: Seen) -> tuple[int, dict, str]:
        if "x-forwarded-for" in seen.headers:
            return 403, {}, "Forbidden"
        if seen.headers.get("metadata-flavor") != "Google":
            return 403, {}, "Missing Metadata-Flavor:Google header."
        if seen.path != PREEMPTED_PATH:
            return 404, {}, "Not Found"
        with self.lock:
            if seen.query.get("wait_for_change") == "true":
                start = self.etag()
                last = seen.query.get("last_etag")
                limit = time.monotonic() + float(seen.query.get("timeout_sec", "3600"))
                if last is None or last == start:
                    while self.etag() == (last or start) and not self.closing:
                        left = limit - time.monotonic()
                        if left <= 0:
                            break
                        self.lock.wait(timeout=left)
            value, etag = self.value, self.etag()
        headers = {"Metadata-Flavor": "Google", "ETag": etag, "Content-Type": "application/text"}
        return 200, headers, value
