"""Traces: this server's spans under the SDK's span per message, and the OpenTelemetry SDK set up from OTEL_*.

The MCP SDK makes one SERVER span per message (`tools/call restore_snapshot`,
with `mcp.method.name`, `gen_ai.tool.name`, `jsonrpc.request.id`, `error.type`),
parented on the `traceparent` the client put in the request's `_meta`. Under it,
this server adds:

    consent <action>      the consent decision settled (`consent/settle.py`): its step and outcome
    ledger <operation>    each call to the consent ledger that spends something (`state/traced.py`)
    <METHOD> <template>   each provider request, one span per attempt (`provider/http.py`), with the
                          HTTP client semantic conventions: never a header, a token, a query or an id

Only `opentelemetry-api` is imported here (the SDK depends on it): with no
tracer provider configured every span is the API's non-recording one, and
attributes are computed only when a span records (`is_recording()`).

`configure(environ)` installs the OpenTelemetry SDK (the `otel` extra) when the
standard variables ask for traces (`OTEL_TRACES_EXPORTER`, or an
`OTEL_EXPORTER_OTLP_*ENDPOINT`); every other setting is the SDK's own OTEL_*
variable. With the variables set and the extra missing, one line is logged and
the server runs without traces.

A leaf: it imports nothing from the package.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, NoOpTracerProvider, ProxyTracerProvider, Span, SpanKind, StatusCode

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace import Link
    from opentelemetry.trace.span import TraceState
    from opentelemetry.util.types import Attributes

logger = logging.getLogger("vps_snapshots_mcp.tracing")

TRACER_NAME = "vps_snapshots_mcp"
_tracer = trace.get_tracer(TRACER_NAME)  # a proxy: it follows the provider configured later, as the SDK's does

EXTRA_HINT = "pip install 'vps-snapshots-mcp[otel]'"


_on: list[bool] = []
"""Holds True once a tracer provider is configured (the API sets the global one once: it stays)."""

_OFF: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)
"""What a span is while tracing is off: reusable, nothing made, nothing attached to the context."""


def tracing_off() -> bool:
    """True while no tracer provider is configured: every span would be the API's no-op one anyway."""
    if _on:
        return False
    if isinstance(trace.get_tracer_provider(), ProxyTracerProvider | NoOpTracerProvider):
        return True
    _on.append(True)
    return False


def untraced() -> bool:
    """No span made here would be recorded: no tracer provider, or the current span is in a trace nobody samples.

    Under a span the sampler dropped, every standard sampler drops its children too (the parent-based ones
    follow the parent; the trace-id ratio decides alike for every span of a trace), so making them would cost
    about 20 µs each for nothing.
    """
    if tracing_off():
        return True
    context = trace.get_current_span().get_span_context()
    return context.is_valid and not context.trace_flags.sampled


def error_type(exc: BaseException) -> str:
    """`error.type` of a failure: this server's stable error code when it has one, else the exception's class."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else type(exc).__qualname__


def span(name: str, *, kind: SpanKind = SpanKind.INTERNAL) -> AbstractContextManager[Span]:
    """A child span of the current one; an exception escaping it sets `error.type` and the ERROR status.

    No tracer provider, or a trace nobody samples (`untraced`): the invalid span, with nothing made and nothing
    attached to the context.
    """
    return _OFF if untraced() else _span(name, kind)


@contextmanager
def _span(name: str, kind: SpanKind) -> Iterator[Span]:
    with _tracer.start_as_current_span(name, kind=kind, record_exception=False, set_status_on_exception=False) as s:
        try:
            yield s
        except BaseException as exc:
            if s.is_recording():
                failed(s, error_type(exc))
            raise


def failed(s: Span, kind: str) -> None:
    """Mark the span as failed with `error.type` = `kind` (a code, a status, a class name; never a message)."""
    s.set_attribute("error.type", kind)
    s.set_status(StatusCode.ERROR)


# --- the provider's requests: HTTP client semantic conventions ----------------------------------------------


def http_client_span(
    method: str, template: str, address: str, port: int, *, resend: int
) -> AbstractContextManager[Span]:
    """One attempt of a provider request. `template` is the endpoint's path template: no id, no query."""
    return _OFF if untraced() else _http_client_span(method, template, address, port, resend)


@contextmanager
def _http_client_span(method: str, template: str, address: str, port: int, resend: int) -> Iterator[Span]:
    with _span(f"{method} {template}", SpanKind.CLIENT) as s:
        if s.is_recording():
            s.set_attributes(
                {
                    "http.request.method": method,
                    "url.template": template,
                    "server.address": address,
                    "server.port": port,
                }
            )
            if resend:
                s.set_attribute("http.request.resend_count", resend)
        yield s


def answered(s: Span, status: int) -> None:
    """The provider answered `status`: recorded, and a failure from 400 on (`error.type` = the status)."""
    if s.is_recording():
        s.set_attribute("http.response.status_code", status)
        if status >= 400:
            failed(s, str(status))


# --- setting up the SDK from the standard variables ------------------------------------------------------------

ASKING = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
"""The variables that ask for traces; the SDK reads every other OTEL_* variable itself."""


def asked_for(environ: Mapping[str, str]) -> bool:
    """Whether the standard variables ask for traces (and do not disable the SDK)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters == "none":
        return False
    return any(environ.get(name, "").strip() for name in ASKING)


def configure(environ: Mapping[str, str], *, version: str = "") -> TracerProvider | None:
    """Install the SDK's tracer provider when the variables ask for traces; the provider, or None.

    Called once at start (stdio and HTTP alike), before the server is built, with the process's environment:
    the SDK and its exporter read their own variables from it. Never raises: a missing extra or an exporter
    the variables name but nobody installed is one log line, and the server runs untraced.
    """
    if not asked_for(environ) or not tracing_off():  # not asked, or a provider set already (the one used)
        return None
    provider = tracer_provider_from(environ, version=version)
    if provider is not None:
        trace.set_tracer_provider(provider)
    return provider


def tracer_provider_from(environ: Mapping[str, str], *, version: str = "") -> TracerProvider | None:
    """The SDK's tracer provider with the exporters OTEL_TRACES_EXPORTER names (default `otlp`), or None."""
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        logger.warning(
            "OTEL_* variables ask for traces but the OpenTelemetry SDK is not installed (%s): traces are off",
            EXTRA_HINT,
        )
        return None
    exporters: list[SpanExporter] = []
    for name in (n.strip().lower() for n in (environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")):
        if name == "console":
            exporters.append(ConsoleSpanExporter(out=sys.stderr))  # stdout is the stdio transport's
        elif name == "otlp":
            otlp = _otlp_exporter(environ)
            if otlp is None:
                return None
            exporters.append(otlp)
        elif name and name != "none":
            logger.warning("OTEL_TRACES_EXPORTER names %r, which this server does not know: traces are off", name)
            return None
    resource = Resource.create()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "unknown_service")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "vps-snapshots-mcp"}))
    if version and SERVICE_VERSION not in resource.attributes:
        resource = resource.merge(Resource({SERVICE_VERSION: version}))
    provider = TracerProvider(resource=resource, sampler=default_sampler(environ))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_*
    logger.info("traces are exported (%s)", ", ".join(type(e).__name__ for e in exporters))
    return provider


READ_SAMPLE_RATIO = 0.01
"""With `OTEL_TRACES_SAMPLER` unset: the share of reads (and other messages) traced when the client's request
carries no sampled trace. Changes are always traced, and so is every call whose client sent a sampled
`traceparent` (the client asked to follow it)."""

CHANGES = frozenset(f"tools/call {tool}" for tool in ("create_snapshot", "restore_snapshot", "delete_snapshot"))
"""The MCP SDK's span names of the calls that change something (their previews too)."""


def default_sampler(environ: Mapping[str, str]) -> Sampler | None:
    """None when `OTEL_TRACES_SAMPLER` names a sampler (the SDK reads it, and `OTEL_TRACES_SAMPLER_ARG`); else
    this server's: the client's sampled flag when it sent one; without one, every change and a share of the
    rest (`READ_SAMPLE_RATIO`), chosen by trace id.

    Why not the SDK's default (every span recorded): recording costs what the SDK charges, tens of
    microseconds a span (docs/performance.md), several times what a read costs this server, and reads are
    most calls; a change waits on the provider for far longer than its spans cost.
    """
    if environ.get("OTEL_TRACES_SAMPLER", "").strip():
        return None
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, SamplingResult, TraceIdRatioBased
    from opentelemetry.sdk.trace.sampling import Sampler as SdkSampler

    reads = TraceIdRatioBased(READ_SAMPLE_RATIO)

    class ChangesAndSomeReads(SdkSampler):
        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Attributes = None,
            links: Sequence[Link] | None = None,
            trace_state: TraceState | None = None,
        ) -> SamplingResult:
            chosen = ALWAYS_ON if name in CHANGES else reads
            return chosen.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"ChangesAndSomeReads{{{READ_SAMPLE_RATIO}}}"

    return ParentBased(ChangesAndSomeReads())


def _otlp_exporter(environ: Mapping[str, str]) -> SpanExporter | None:
    """The OTLP exporter over HTTP (http/protobuf); it reads its endpoint, headers and timeout from OTEL_*."""
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol.strip() != "http/protobuf":
        logger.warning("this server exports OTLP as http/protobuf only, not %r: traces are off", protocol.strip())
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        logger.warning(
            "OTEL_* variables ask for OTLP traces but its exporter is not installed (%s): traces are off", EXTRA_HINT
        )
        return None
    return OTLPSpanExporter()


__all__ = ["Span", "answered", "configure", "error_type", "failed", "http_client_span", "span", "tracing_off"]
