"""One HTTP request to a node's metadata service, with the failures that are worth a retry
(no answer, a timeout, a server error) raised as `MetadataError` and every other answer
returned as it came, for the provider to read."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass


class MetadataError(RuntimeError):
    """The metadata service did not answer usefully: the watcher retries with a backoff."""


@dataclass(frozen=True)
class Answer:
    """A metadata service's answer: status, headers (lower-case names) and text."""

    status: int
    headers: Mapping[str, str]
    text: str


# Metadata services live on the node itself or on a link-local address: a proxy from the
# environment would only be in the way (and see the IMDS token).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(
    method: str, url: str, headers: Mapping[str, str] | None = None, timeout: float = 5.0
) -> Answer:
    """Send one request; raise `MetadataError` for no answer or a 5xx, return anything else."""
    call = urllib.request.Request(url, method=method, headers=dict(headers or {}))
    try:
        with _OPENER.open(call, timeout=timeout) as reply:  # noqa: S310 (the metadata URL)
            return _answer(reply.status, reply.headers, reply.read())
    except urllib.error.HTTPError as exc:
        answer = _answer(exc.code, exc.headers, exc.read() if exc.fp else b"")
        if answer.status >= 500:
            detail = f"HTTP {answer.status} {answer.text[:200]}"
            raise MetadataError(f"{method} {url}: {detail}") from None
        return answer
    except (OSError, http.client.HTTPException) as exc:  # timeouts are OSErrors
        reason = getattr(exc, "reason", None) or exc
        raise MetadataError(f"{method} {url}: {reason}") from None


def _answer(status: int, headers: object, body: bytes) -> Answer:
    items = headers.items() if hasattr(headers, "items") else []  # type: ignore[union-attr]
    return Answer(status, {k.lower(): v for k, v in items}, body.decode("utf-8", "replace"))
