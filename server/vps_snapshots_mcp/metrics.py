"""Metrics: what an operator scrapes from `/metrics`, in the Prometheus text format (no MCP or web import).

Each server owns a `Metrics`, with a registry of its own (never prometheus_client's global one), so two servers
in one process (tests, replicas) count apart. The composition root makes it and hands its parts to the rooms
that count: the MCP middleware (`protocol/metered.py`), the provider's request path, the waits, the consent
settling, the stream sessions.

Every label value comes from a closed set, enforced here: a value outside its set is counted as "other". No id,
principal, token or server id can become a label (tests/test_metrics.py lists every label value after a
thousand calls). The names follow OpenTelemetry's semantic conventions where they name the thing
(`mcp.server.operation.duration` is `mcp_server_operation_duration_seconds`, `http.client.request.duration` is
`http_client_request_duration_seconds`); the rest are ours, prefixed `vps_snapshots_`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .errors import ERROR_CODES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The text format every Prometheus reads (our names and labels are all in the legacy character set)."""

OTHER = "other"
"""What a label value outside its closed set is counted as."""

MCP_METHODS = frozenset(
    {
        "initialize", "ping", "tools/list", "tools/call", "prompts/list", "prompts/get", "resources/list",
        "resources/read", "resources/templates/list", "resources/subscribe", "resources/unsubscribe",
        "completion/complete", "logging/setLevel", "server/discover",
    }
)  # fmt: skip
"""The MCP request methods a client may send (2025-11-25 and 2026-07-28)."""

JSONRPC_ERRORS = frozenset({"-32700", "-32600", "-32601", "-32602", "-32603", "-32042"})
"""JSON-RPC error codes an MCP request may end with (as `error.type`, the way the SDK's span names them)."""

OUTCOMES = frozenset({"", "tool_error", *ERROR_CODES, *JSONRPC_ERRORS})
"""`error.type`: "" for success (OpenTelemetry leaves it unset, and Prometheus drops an empty label, so both
read alike), a stable error code (`errors.py`) for a tool error, a JSON-RPC code for a protocol error."""

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

STATUS_CLASSES = frozenset({"1xx", "2xx", "3xx", "4xx", "5xx", "none"})
"""A provider answer's status class; "none" when no answer came (timeout, connection failure)."""

RETRY_REASONS = frozenset({"429", "502", "503", "504", "connection"})

ACTIONS = frozenset({"restore", "delete"})

ConsentStage = Literal[
    "previewed",
    "asked",
    "approved",
    "declined",
    "expired",
    "redeemed",
    "refused_replayed",
    "refused_invalid",
    "state_unavailable",
]
CONSENT_STAGES: frozenset[str] = frozenset(ConsentStage.__args__)  # type: ignore[attr-defined]
"""The consent funnel, one counter: previewed → asked → approved | declined | expired → redeemed, and the
refusals on the way (replayed, invalid, the ledger unavailable)."""

Channel = Literal["token", "form", "url", ""]
CHANNELS = frozenset({"token", "form", "url", ""})
"""How consent travels: a confirmation token, a form question (elicitation), an approval page (url, reserved
for the page's asked/approved/declined/expired), or "" where no channel is involved yet (a preview)."""

OPERATION_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
"""Seconds; the upper ones for waits and elicitation rounds, which last minutes."""
PROVIDER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def bounded(value: str, allowed: Iterable[str]) -> str:
    """`value` when it is in `allowed`, else "other": no label value comes from outside its closed set."""
    return value if value in allowed else OTHER


def status_class(status: int | None) -> str:
    return "none" if status is None else bounded(f"{status // 100}xx", STATUS_CLASSES)


@dataclass(frozen=True)
class MetricDoc:
    """One metric as the docs list it (docs/observability.md is generated from `Metrics.described()`)."""

    name: str
    kind: str
    labels: tuple[str, ...]
    meaning: str


class Metrics:
    """The server's instruments, in a registry of its own. `tools` and `endpoints` are the closed sets of tool
    names and provider endpoint templates (the composition root knows them)."""

    def __init__(self, *, tools: Iterable[str] = (), endpoints: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tools = frozenset(tools) | {""}
        self.endpoints = frozenset(endpoints)
        r = self.registry
        self.operation = Histogram(
            "mcp_server_operation_duration_seconds",
            "MCP requests served: how long each took, by method, tool and outcome (error_type: '' for success, "
            "the stable error code of a tool error, the JSON-RPC code of a protocol error).",
            ["mcp_method_name", "gen_ai_tool_name", "error_type"],
            buckets=OPERATION_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "mcp_server_requests_in_flight", "MCP requests being served now, by method.", ["mcp_method_name"],
            registry=r,
        )  # fmt: skip
        self.sessions = Gauge(
            "mcp_server_sessions_open", "Stateful streamable-HTTP sessions open now (0 with --stateless).", registry=r
        )
        self.provider = Histogram(
            "http_client_request_duration_seconds",
            "Requests to the provider's API (each attempt): duration by method, endpoint template and status class.",
            ["http_request_method", "url_template", "status_class"],
            buckets=PROVIDER_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "vps_snapshots_provider_retries", "Reads retried after a failed attempt, by endpoint and reason.",
            ["http_request_method", "url_template", "reason"], registry=r,
        )  # fmt: skip
        self.bytes_read = Counter(
            "vps_snapshots_provider_response_bytes", "Bytes of provider answers read, by endpoint template.",
            ["url_template"], registry=r,
        )  # fmt: skip
        self.shared_reads = Counter(
            "vps_snapshots_provider_reads_shared",
            "Reads answered by an identical read already in flight (single-flight) instead of a request of their own.",
            registry=r,
        )
        self.waits = Gauge("vps_snapshots_waits", "Calls waiting for a snapshot to finish, now.", registry=r)
        self.pollers = Gauge(
            "vps_snapshots_wait_pollers", "Snapshots being polled now: one poller each, however many calls wait.",
            registry=r,
        )  # fmt: skip
        self.consent_events = Counter(
            "vps_snapshots_consent", "The consent funnel of restore and delete, by action, channel and stage.",
            ["action", "channel", "stage"], registry=r,
        )  # fmt: skip
        self.ledger_up = Gauge(
            "vps_snapshots_ledger_up",
            "1 when the consent ledger's store answered the last readiness probe (/readyz), 0 when it did not.",
            registry=r,
        )
        self.ledger_up.set(1)
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        """Each labelled child made once: `labels()` validates and locks on every call; bounded, as the labels are."""

    def _child(self, metric: Histogram | Counter | Gauge, *values: str) -> Any:
        key = (metric._name, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    # --- recording: one call per site ---------------------------------------------------------------------------

    def operation_done(self, method: str, tool: str, error_type: str, seconds: float) -> None:
        self._child(
            self.operation, bounded(method, MCP_METHODS), bounded(tool, self.tools), bounded(error_type, OUTCOMES)
        ).observe(seconds)

    def requests_in_flight(self, method: str) -> Any:
        """The in-flight gauge of one MCP method (its `inc()` when a request starts, `dec()` when it ends)."""
        return self._child(self.in_flight, bounded(method, MCP_METHODS))

    def provider_request(self, method: str, template: str, status: int | None, seconds: float, size: int) -> None:
        template = bounded(template, self.endpoints)
        self._child(self.provider, bounded(method, HTTP_METHODS), template, status_class(status)).observe(seconds)
        if size:
            self._child(self.bytes_read, template).inc(size)

    def provider_retry(self, method: str, template: str, reason: str) -> None:
        self.retries.labels(
            bounded(method, HTTP_METHODS), bounded(template, self.endpoints), bounded(reason, RETRY_REASONS)
        ).inc()

    def consent(self, action: str, channel: str, stage: str) -> None:
        self._child(
            self.consent_events, bounded(action, ACTIONS), bounded(channel, CHANNELS), bounded(stage, CONSENT_STAGES)
        ).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The registry in the Prometheus text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE

    def label_sets(self) -> dict[str, frozenset[str]]:
        """Each label and the closed set its values come from (the docs list them)."""
        return {
            "mcp_method_name": MCP_METHODS,
            "gen_ai_tool_name": self.tools,
            "error_type": OUTCOMES,
            "http_request_method": HTTP_METHODS,
            "url_template": self.endpoints,
            "status_class": STATUS_CLASSES,
            "reason": RETRY_REASONS,
            "action": ACTIONS,
            "channel": CHANNELS,
            "stage": CONSENT_STAGES,
        }

    def described(self) -> list[MetricDoc]:
        """Every metric with its labels and meaning, as the docs list them."""
        kinds = {Histogram: "histogram", Counter: "counter", Gauge: "gauge"}
        docs = []
        for value in vars(self).values():
            if isinstance(value, Histogram | Counter | Gauge):
                name = value._name + ("_total" if isinstance(value, Counter) else "")
                docs.append(MetricDoc(name, kinds[type(value)], tuple(value._labelnames), value._documentation))
        return docs


__all__ = ["CONSENT_STAGES", "OTHER", "Channel", "ConsentStage", "MetricDoc", "Metrics", "bounded"]
