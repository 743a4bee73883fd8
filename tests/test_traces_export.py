"""Exporting traces: the `otel` extra set up at start by the standard OTEL_* variables, and nothing without them.

A server process over stdio exports to a local OTLP/HTTP receiver the spans of
a restore its client traced; the same process without the SDK installed logs one
line and serves untraced; with no variables set, no tracer provider is made.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from opentelemetry import trace

from vps_snapshots_mcp.protocol.published import TOOLS_JSON
from vps_snapshots_mcp.simulator import ProviderState
from vps_snapshots_mcp.tracing import CHANGES, READ_SAMPLE_RATIO, asked_for, default_sampler, tracer_provider_from

from .support.mcp_client import preview_token
from .support.tracing import encodings, otlp_receiver, recording
from .support.world import TOKEN


@pytest.mark.parametrize(
    ("environ", "asked"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "snapshots"}, False),  # naming the service asks for nothing
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_the_standard_variables_ask_for_traces(environ: dict[str, str], asked: bool) -> None:
    assert asked_for(environ) is asked


UNTRACED = """
import sys
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN
from vps_snapshots_mcp import tracing
assert tracing.configure({}) is None and tracing.tracing_off()
with tracing.span("consent restore") as span:
    assert span is INVALID_SPAN and trace.get_current_span() is INVALID_SPAN
with tracing.http_client_span("POST", "/snapshots/{id}/restore/", "provider.test", 443, resend=0) as span:
    tracing.answered(span, 503)
    assert span is INVALID_SPAN
assert "opentelemetry.sdk" not in sys.modules
print("untraced")
"""


def test_without_the_variables_no_tracer_provider_is_made_and_spans_are_the_no_op_one() -> None:
    done = subprocess.run([sys.executable, "-c", UNTRACED], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "untraced"), done.stderr


@pytest.mark.slow
def test_the_variables_without_the_extra_are_one_log_line_and_the_server_serves(tmp_path: Path) -> None:
    # The SDK hidden from the server process, as on an install without the `otel` extra; stdin at its end.
    hide_the_sdk = "import sys; sys.modules['opentelemetry.sdk'] = None; from vps_snapshots_mcp.cli import main; "
    done = subprocess.run(
        [sys.executable, "-c", hide_the_sdk + "sys.exit(main(['--log-level', 'INFO']))"],
        env={
            "PATH": "/usr/bin:/bin",
            "VPS_API_URL": "http://127.0.0.1:9/api/v1",
            "VPS_API_TOKEN": TOKEN,
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "OTEL" in line or "OpenTelemetry" in line]
    assert len(said) == 1, done.stderr
    assert "WARNING" in said[0] and "vps-snapshots-mcp[otel]" in said[0] and "traces are off" in said[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_server_over_stdio_exports_the_clients_trace_to_an_otlp_collector(
    served_provider: str, provider: ProviderState, tmp_path: Path
) -> None:
    stderr_path = tmp_path / "server.stderr"
    with recording(), otlp_receiver() as (collector, received), stderr_path.open("w") as stderr:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "vps_snapshots_mcp"],
            env={
                "VPS_API_URL": served_provider,
                "VPS_API_TOKEN": TOKEN,
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector,
                "OTEL_SERVICE_NAME": "snapshots-under-test",
                "OTEL_BSP_SCHEDULE_DELAY": "50",  # milliseconds: exported while the session is still open
            },
        )
        async with Client(stdio_client(params, errlog=stderr)) as client:
            confirmation = await preview_token(client, "restore_snapshot", 801)
            with trace.get_tracer("the assistant").start_as_current_span("assistant turn") as turn:
                done = await client.call_tool(
                    "restore_snapshot", {"snapshot_id": 801, "confirm": True, "confirmation_token": confirmation}
                )
            assert not done.is_error, done.content
            trace_id = turn.get_span_context().trace_id
            deadline = time.monotonic() + 20
            names: set[str] = set()
            while time.monotonic() < deadline and "tools/call restore_snapshot" not in names:
                names = {span[3] for span in received.in_trace(trace_id)}
                await anyio.sleep(0.05)

    spans = received.in_trace(trace_id)
    by_name = {span[3]: span for span in spans}
    assert {"tools/call restore_snapshot", "consent restore", "ledger redeem"} <= set(by_name), stderr_path.read_text()
    post = by_name["POST /api/v1/snapshots/{id}/restore/"]
    assert post[4]["url.template"] == "/api/v1/snapshots/{id}/restore/" and post[4]["http.response.status_code"] == 200
    assert by_name["consent restore"][2] == by_name["tools/call restore_snapshot"][1]
    every_value = " ".join(str(v) for span in received.spans for v in (span[3], *span[4].items()))
    secrets = [TOKEN, confirmation, "pre-migration-snapshot", "web-server-01"]
    assert [s for s in secrets if any(form in every_value for form in encodings(s))] == []


def _recorded(sampler_environ: dict[str, str], name: str, trace_id: int, parent_sampled: bool | None) -> bool:
    """Whether the sampler `tracer_provider_from` installs for `sampler_environ` records a span named as the MCP
    SDK names its span per message, in trace `trace_id` (parent: the client's traceparent, or none)."""
    from opentelemetry.sdk.trace.sampling import Decision, _get_from_env_or_default
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    sampler = default_sampler(sampler_environ) or _get_from_env_or_default()
    context = None
    if parent_sampled is not None:
        flags = TraceFlags(TraceFlags.SAMPLED if parent_sampled else TraceFlags.DEFAULT)
        parent = SpanContext(trace_id=trace_id, span_id=7, is_remote=True, trace_flags=flags)
        context = set_span_in_context(NonRecordingSpan(parent))
    return sampler.should_sample(context, trace_id, name).decision is Decision.RECORD_AND_SAMPLE


def test_the_server_s_tracer_provider_has_its_sampler_and_records_a_change_in_a_trace_of_its_own() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    provider = tracer_provider_from({"OTEL_TRACES_EXPORTER": "console"})
    assert isinstance(provider, TracerProvider)
    assert provider.sampler.get_description().startswith("ParentBased{root:ChangesAndSomeReads{0.01}")
    with provider.get_tracer("test").start_as_current_span("tools/call delete_snapshot") as span:
        assert span.is_recording()  # a root span, its trace id the SDK's own
    provider.shutdown()


# TraceIdRatioBased keeps a trace when its id's low 64 bits fall below ratio * 2**64.
KEPT_ID, DROPPED_ID = 1, 2**64 - 1


def test_the_changes_the_sampler_always_traces_are_the_published_tools_that_are_not_read_only() -> None:
    tools = json.loads(TOOLS_JSON.read_bytes())  # tracing.py imports nothing of the package: kept in step here
    assert {f"tools/call {t['name']}" for t in tools if not t["annotations"]["readOnlyHint"]} == CHANGES


@pytest.mark.parametrize("tool", ["create_snapshot", "restore_snapshot", "delete_snapshot"])
def test_by_default_every_change_is_traced(tool: str) -> None:
    assert _recorded({}, f"tools/call {tool}", DROPPED_ID, None)  # no client trace: traced all the same


def test_by_default_a_share_of_reads_is_traced_and_a_client_s_sampled_flag_wins() -> None:
    assert READ_SAMPLE_RATIO == 0.01
    assert _recorded({}, "tools/call list_snapshots", KEPT_ID, None)
    assert not _recorded({}, "tools/call list_snapshots", DROPPED_ID, None)
    assert not _recorded({}, "tools/list", DROPPED_ID, None)
    assert not _recorded({}, "tools/call restore_snapshotX", DROPPED_ID, None)  # a name that only looks like one
    assert _recorded({}, "tools/call list_snapshots", DROPPED_ID, True)  # the client follows this call
    assert not _recorded({}, "tools/call delete_snapshot", KEPT_ID, False)  # the client said not to
    ids = range(1, 2**64, 2**64 // 10_000)  # spread evenly over the ids: the share kept is the ratio
    kept = sum(_recorded({}, "tools/call get_snapshot", i, None) for i in ids)
    assert 90 <= kept <= 110, kept


def test_a_sampler_the_variables_name_replaces_this_server_s() -> None:
    assert default_sampler({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}) is None
    with pytest.MonkeyPatch.context() as patch:  # the SDK reads the variable itself
        patch.setenv("OTEL_TRACES_SAMPLER", "always_on")
        assert _recorded({"OTEL_TRACES_SAMPLER": "always_on"}, "tools/call list_snapshots", DROPPED_ID, None)
        patch.setenv("OTEL_TRACES_SAMPLER", "always_off")
        assert not _recorded({"OTEL_TRACES_SAMPLER": "always_off"}, "tools/call delete_snapshot", KEPT_ID, None)
