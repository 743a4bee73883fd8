"""Spans captured in memory by the real OpenTelemetry SDK, and the check that none of them holds a secret.

A process has one global tracer provider (the API allows setting it once): the
first test that records installs the SDK's, with a sampler that drops every span
unless a test is recording, so the tests after it in the same worker run as they
would untraced, but for the cost of a non-recording span.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import quote

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes


class Switch(Sampler):
    """Records every span while on; drops every span while off."""

    def __init__(self) -> None:
        self.on = False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes) if self.on else SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "Switch"


_exporter = InMemorySpanExporter()
_switch = Switch()
_installed = threading.Lock()
_provider: list[TracerProvider] = []


def _install() -> None:
    with _installed:
        if _provider:
            return
        provider = TracerProvider(sampler=_switch)
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
        _provider.append(provider)


@contextmanager
def recording() -> Iterator[InMemorySpanExporter]:
    """Every span ended inside the block, the server's and the client's, kept by the SDK's in-memory exporter."""
    _install()
    _exporter.clear()
    _switch.on = True
    try:
        yield _exporter
    finally:
        _switch.on = False
        _exporter.clear()


def named(spans: Iterable[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def children(spans: Iterable[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    parent_id = parent.context.span_id
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent_id]


def descends_from(spans: Sequence[ReadableSpan], span: ReadableSpan, ancestor: ReadableSpan) -> bool:
    by_id = {s.context.span_id: s for s in spans}
    current: ReadableSpan | None = span
    while current is not None and current.parent is not None:
        if current.parent.span_id == ancestor.context.span_id:
            return True
        current = by_id.get(current.parent.span_id)
    return False


def encodings(secret: str) -> set[str]:
    """`secret` plain, URL-encoded, and base64-encoded (standard and URL-safe) at each of the three alignments
    it can have inside a longer encoded text (the characters that depend on its neighbours left out)."""
    forms = {secret, quote(secret, safe=""), quote(secret)}
    raw = secret.encode()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode().rstrip("=")
        start = (offset * 4 + 2) // 3  # the characters mixed with the padding before it are dropped
        core = encoded[start:-1]  # the last character may be mixed with what follows
        forms |= {core, core.replace("+", "-").replace("/", "_")}
    return {form for form in forms if len(form) >= 6}


def texts_of(span: ReadableSpan) -> list[str]:
    """Every text a span carries: its name, its status, its attributes and those of its events and links."""
    found = [span.name, span.status.description or ""]
    attribute_sets = [span.attributes or {}, *(e.attributes or {} for e in span.events)]
    attribute_sets += [link.attributes or {} for link in span.links]
    for attributes in attribute_sets:
        for key, value in attributes.items():
            found.append(key)
            values = value if isinstance(value, tuple | list) else (value,)
            found.extend(str(v) for v in values)
    found.extend(e.name for e in span.events)
    return found


def leaks(spans: Iterable[ReadableSpan], secrets: Iterable[str]) -> list[tuple[str, str]]:
    """(span name, secret) for every span one of whose texts holds a secret, in any of its encodings."""
    forms = {form: secret for secret in secrets for form in encodings(secret)}
    found: list[tuple[str, str]] = []
    for span in spans:
        for text in texts_of(span):
            found.extend((span.name, secret) for form, secret in forms.items() if form in text)
    return found


# --- a local OTLP/HTTP receiver: what a server process exports, decoded ----------------------------------------


class Received:
    """The spans an OTLP receiver was sent, as (trace id, span id, parent span id, name, attributes)."""

    def __init__(self) -> None:
        self.spans: list[tuple[int, int, int, str, dict[str, object]]] = []
        self.lock = threading.Lock()

    def add(self, body: bytes) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        found = []
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    parent = int.from_bytes(span.parent_span_id, "big") if span.parent_span_id else 0
                    found.append(
                        (
                            int.from_bytes(span.trace_id, "big"),
                            int.from_bytes(span.span_id, "big"),
                            parent,
                            span.name,
                            attributes,
                        )
                    )
        with self.lock:
            self.spans.extend(found)

    def in_trace(self, trace_id: int) -> list[tuple[int, int, int, str, dict[str, object]]]:
        with self.lock:
            return [s for s in self.spans if s[0] == trace_id]


def _value(value: object) -> object:
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(value, kind) if kind else None


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, Received]]:
    """An OTLP/HTTP endpoint on a loopback port (POST /v1/traces, protobuf); yields its base URL and what it got."""
    import gzip

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from vps_snapshots_mcp.simulator.serve import serving_in_thread

    received = Received()

    async def traces(request: Request) -> Response:
        body = await request.body()
        received.add(gzip.decompress(body) if request.headers.get("content-encoding") == "gzip" else body)
        return Response(b"", media_type="application/x-protobuf")

    with serving_in_thread(Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])) as url:
        yield url, received
