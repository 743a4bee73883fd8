"""Faults the simulator can inject, one instance at a time.

A `Fault` is queued on a `ProviderState` and consumed by the next matching
requests (`times` of them). It answers in place of the provider, the way a
failing proxy or an overloaded API would, before authentication is checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BodyKind = Literal["json", "fields", "html", "text", "empty", "malformed_json", "wrong_shape"]

HTML_ERROR_PAGE = """<!DOCTYPE html>
<html><head><title>502 Bad Gateway</title></head>
<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>
<script>window.location = "/maintenance";</script></body></html>
"""


@dataclass
class Fault:
    """One injected misbehaviour. Build it with the class methods below."""

    status: int = 500
    body: BodyKind = "json"
    detail: str = "Internal server error."
    retry_after: str | None = None
    delay_s: float = 0.0
    """Extra latency before answering (real time: used for timeout and concurrency tests)."""
    passthrough: bool = False
    """After the delay, answer normally instead of with `status`/`body`."""
    lose_answer: bool = False
    """Do the work, then answer with `status`/`body` anyway: a proxy that lost the real answer."""
    times: int = 1
    method: str | None = None
    path_suffix: str | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path_suffix is None or path.endswith(self.path_suffix)

    @classmethod
    def error(
        cls, status: int, detail: str = "Internal server error.", *, times: int = 1, method: str | None = None
    ) -> Fault:
        return cls(status=status, body="json", detail=detail, times=times, method=method)

    @classmethod
    def field_errors(cls, status: int, detail: str, *, times: int = 1, method: str | None = None) -> Fault:
        """DRF-style field errors: `{"name": [detail], "server_id": [detail]}`."""
        return cls(status=status, body="fields", detail=detail, times=times, method=method)

    @classmethod
    def html_page(cls, status: int = 502, *, times: int = 1, method: str | None = None) -> Fault:
        return cls(status=status, body="html", times=times, method=method)

    @classmethod
    def text(cls, status: int, detail: str, *, times: int = 1, method: str | None = None) -> Fault:
        return cls(status=status, body="text", detail=detail, times=times, method=method)

    @classmethod
    def rate_limit(cls, retry_after: str | None = "1", *, times: int = 1, method: str | None = None) -> Fault:
        return cls(status=429, detail="Request was throttled.", retry_after=retry_after, times=times, method=method)

    @classmethod
    def malformed_json(cls, status: int = 200, *, times: int = 1, method: str | None = None) -> Fault:
        return cls(status=status, body="malformed_json", times=times, method=method)

    @classmethod
    def wrong_shape(cls, status: int = 200, *, times: int = 1, method: str | None = None) -> Fault:
        return cls(status=status, body="wrong_shape", times=times, method=method)

    @classmethod
    def lost_answer(cls, status: int = 502, *, times: int = 1, method: str | None = None) -> Fault:
        return cls(status=status, body="html", lose_answer=True, times=times, method=method)

    @classmethod
    def latency(cls, delay_s: float, *, times: int = 1, method: str | None = None) -> Fault:
        return cls(delay_s=delay_s, passthrough=True, times=times, method=method)
