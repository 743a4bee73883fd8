"""Traces: one restore followed from the client's `traceparent` to the provider's answer, and nothing secret in them.

The spans are the real OpenTelemetry SDK's, kept by its in-memory exporter
(tests/support/tracing.py); the client is the MCP SDK's own, which puts its
span's `traceparent` in each request's `_meta`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import INVALID_SPAN, NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags
from pydantic import SecretStr

from vps_snapshots_mcp import tracing
from vps_snapshots_mcp.simulator import ProviderState
from vps_snapshots_mcp.simulator.faults import Fault
from vps_snapshots_mcp.state import ApprovalRefused
from vps_snapshots_mcp.state.memory import MemoryLedger
from vps_snapshots_mcp.state.traced import traced

from .support.http_serving import ServeFn
from .support.mcp_client import connected, preview_token
from .support.tracing import children, descends_from, encodings, leaks, named, recording
from .support.world import TOKEN, ServerFactory

pytestmark = pytest.mark.anyio

AUTH_TOKEN = "client-auth-token-trace-0123456789"
RESTORE_POST = "POST /api/v1/snapshots/{id}/restore/"
LIST_GET = "GET /api/v1/snapshots/"


@asynccontextmanager
async def over_http(url: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {AUTH_TOKEN}"}, timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
    ):
        yield client


def provider_words(provider: ProviderState) -> list[str]:
    """What the provider says of its servers and snapshots: names and descriptions, none of which a span holds."""
    words = [server.name for server in provider.servers.values()]
    for snapshot in provider.snapshots.values():
        words += [snapshot.name, *([snapshot.description] if snapshot.description else [])]
    return words


def one(spans: list[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


@pytest.mark.slow
async def test_one_confirmed_restore_is_one_trace_from_the_clients_call_to_the_providers_answer(
    serve: ServeFn, provider: ProviderState
) -> None:
    with recording() as exporter:
        with serve(auth_token=SecretStr(AUTH_TOKEN)) as url:
            async with over_http(url) as client:
                confirmation = await preview_token(client, "restore_snapshot", 801)
                with trace.get_tracer("the assistant").start_as_current_span("assistant turn") as turn:
                    done = await client.call_tool(
                        "restore_snapshot", {"snapshot_id": 801, "confirm": True, "confirmation_token": confirmation}
                    )
                assert not done.is_error, done.content
        spans = list(exporter.get_finished_spans())

    trace_id, turn_id = turn.get_span_context().trace_id, turn.get_span_context().span_id
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    sent = one(named(in_trace, "MCP send tools/call restore_snapshot"))
    assert sent.kind is SpanKind.CLIENT and sent.parent is not None and sent.parent.span_id == turn_id
    # The server runs in another thread: only the traceparent in the request's _meta can carry the trace there.
    tool = one(named(in_trace, "tools/call restore_snapshot"))
    assert tool.kind is SpanKind.SERVER and tool.parent is not None and tool.parent.is_remote
    assert tool.parent.span_id == sent.context.span_id
    assert tool.attributes is not None and tool.attributes["gen_ai.tool.name"] == "restore_snapshot"
    assert "error.type" not in tool.attributes

    consent = one(named(in_trace, "consent restore"))
    assert consent.parent is not None and consent.parent.span_id == tool.context.span_id
    assert dict(consent.attributes or {}) == {
        "vps_snapshots.consent.step": "token",
        "vps_snapshots.consent.outcome": "approved",
        "vps_snapshots.consent.by": "token",
    }
    ledger = one(children(in_trace, consent))
    assert ledger.name == "ledger redeem"
    assert dict(ledger.attributes or {}) == {
        "db.system.name": "memory",
        "db.operation.name": "redeem",
        "vps_snapshots.ledger.first_use": True,
    }

    post = one(named(in_trace, RESTORE_POST))
    assert descends_from(in_trace, post, tool) and post.kind is SpanKind.CLIENT
    assert dict(post.attributes or {}) == {
        "http.request.method": "POST",
        "url.template": "/api/v1/snapshots/{id}/restore/",
        "server.address": "provider.test",
        "server.port": 443,
        "http.response.status_code": 200,
    }
    assert post.status.status_code is StatusCode.UNSET
    assert ledger.end_time is not None and post.start_time is not None and ledger.end_time <= post.start_time
    look_up = named(in_trace, LIST_GET)  # the target read afresh before anything is decided
    assert look_up and all(descends_from(in_trace, s, tool) for s in look_up)
    assert [(r.method, r.path) for r in provider.mutations] == [("POST", "/api/v1/snapshots/801/restore/")]

    # Nothing secret or said by the provider in any span of the session: the preview's, the restore's, the client's.
    secrets = [TOKEN, AUTH_TOKEN, confirmation, *provider_words(provider)]
    assert spans and leaks(spans, secrets) == []


async def test_a_provider_503_marks_the_request_span_failed(
    make_server: ServerFactory, provider: ProviderState
) -> None:
    with recording() as exporter:
        async with connected(make_server()) as client:
            confirmation = await preview_token(client, "restore_snapshot", 801)
            provider.inject(Fault.error(503, "Service unavailable.", method="POST"))
            failed = await client.call_tool(
                "restore_snapshot", {"snapshot_id": 801, "confirm": True, "confirmation_token": confirmation}
            )
            assert failed.is_error
        spans = list(exporter.get_finished_spans())

    post = one(named(spans, RESTORE_POST))  # a change is sent once, never retried
    assert post.attributes is not None
    assert post.attributes["http.response.status_code"] == 503 and post.attributes["error.type"] == "503"
    assert post.status.status_code is StatusCode.ERROR
    tool = one([s for s in named(spans, "tools/call restore_snapshot") if descends_from(spans, post, s)])
    assert tool.attributes is not None and tool.attributes["error.type"] == "tool_error"
    assert leaks(spans, [TOKEN, confirmation, *provider_words(provider)]) == []


async def test_a_read_retried_after_503_is_a_span_per_attempt(
    make_server: ServerFactory, provider: ProviderState
) -> None:
    provider.inject(Fault.error(503, times=2, method="GET"))
    with recording() as exporter:
        async with connected(make_server()) as client:
            listing = await client.call_tool("list_snapshots", {"server_id": 12345})
            assert not listing.is_error
        spans = list(exporter.get_finished_spans())

    attempts = sorted(named(spans, LIST_GET), key=lambda s: s.start_time or 0)
    seen = [
        (a.get("http.response.status_code"), a.get("error.type"), a.get("http.request.resend_count"))
        for a in (s.attributes or {} for s in attempts)
    ]
    assert seen == [(503, "503", None), (503, "503", 1), (200, None, 2)]


async def test_a_replayed_token_is_refused_in_the_consent_span(
    make_server: ServerFactory, provider: ProviderState
) -> None:
    with recording() as exporter:
        async with connected(make_server()) as client:
            confirmation = await preview_token(client, "restore_snapshot", 801)
            arguments = {"snapshot_id": 801, "confirm": True, "confirmation_token": confirmation}
            assert not (await client.call_tool("restore_snapshot", arguments)).is_error
            assert (await client.call_tool("restore_snapshot", arguments)).is_error
        spans = list(exporter.get_finished_spans())

    settled = [
        s for s in named(spans, "consent restore") if (s.attributes or {})["vps_snapshots.consent.step"] != "preview"
    ]
    first, replay = sorted(settled, key=lambda s: s.start_time or 0)
    assert first.attributes is not None and first.attributes["vps_snapshots.consent.outcome"] == "approved"
    assert replay.attributes is not None and replay.attributes["error.type"] == "confirmation_invalid"
    assert "vps_snapshots.consent.outcome" not in replay.attributes and replay.status.status_code is StatusCode.ERROR
    assert [(s.attributes or {}).get("vps_snapshots.ledger.first_use") for s in children(spans, replay)] == [False]
    assert len(named(spans, RESTORE_POST)) == 1
    assert leaks(spans, [TOKEN, confirmation, *provider_words(provider)]) == []


async def test_each_request_span_names_its_endpoint_template_never_the_path(
    make_server: ServerFactory, provider: ProviderState
) -> None:
    with recording() as exporter:
        async with connected(make_server()) as client:
            assert not (await client.call_tool("create_snapshot", {"server_id": 12345, "name": "traced-one"})).is_error
            confirmation = await preview_token(client, "delete_snapshot", 798)
            arguments = {"snapshot_id": 798, "confirm": True, "confirmation_token": confirmation}
            assert not (await client.call_tool("delete_snapshot", arguments)).is_error
        spans = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]

    attributes = [dict(s.attributes or {}) for s in spans]
    sent = {(str(a["http.request.method"]), str(a["url.template"])) for a in attributes}
    assert sorted(sent) == [
        ("DELETE", "/api/v1/snapshots/{id}/"),
        ("GET", "/api/v1/snapshots/"),
        ("POST", "/api/v1/snapshots/"),
    ]
    # Each template is the path the provider was sent, its ids in place of {id}.
    patterns = {method: re.compile(re.escape(t).replace(re.escape("{id}"), "[0-9]+")) for method, t in sent}
    assert all(patterns[r.method].fullmatch(r.path) for r in provider.requests), provider.requests
    assert not any(char.isdigit() for _, template in sent for char in template.removeprefix("/api/v1/"))
    assert leaks(spans, ["traced-one", "server_id", *provider_words(provider)]) == []


async def test_the_ledgers_spending_calls_are_spans_that_name_no_key() -> None:
    now = 1_800_000_000.0
    ledger = traced(MemoryLedger(wall=lambda: now))
    assert traced(ledger) is ledger and ledger.description
    with recording() as exporter:
        assert await ledger.redeem("nonce:secret-key-0123", expires_at=now + 60) is True
        assert await ledger.redeem("nonce:secret-key-0123", expires_at=now + 60) is False
        approval = await ledger.propose("plan-digest-0123", expires_at=now + 60)
        await ledger.approve(approval, by="oauth:https://id.example#alice")
        await ledger.redeem_approval(approval, plan_digest="plan-digest-0123")
        with pytest.raises(ApprovalRefused):
            await ledger.redeem_approval(approval, plan_digest="plan-digest-0123")
        assert await ledger.spend_change("static:bot", 12345, per_hour=1, per_server_per_hour=None) is None
        assert await ledger.spend_change("static:bot", 12345, per_hour=1, per_server_per_hour=None) is not None
        spans = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)

    seen = [(s.name, {k: v for k, v in (s.attributes or {}).items() if k != "db.system.name"}) for s in spans]
    assert seen == [
        ("ledger redeem", {"db.operation.name": "redeem", "vps_snapshots.ledger.first_use": True}),
        ("ledger redeem", {"db.operation.name": "redeem", "vps_snapshots.ledger.first_use": False}),
        ("ledger redeem_approval", {"db.operation.name": "redeem_approval"}),
        ("ledger redeem_approval", {"db.operation.name": "redeem_approval", "error.type": "ApprovalRefused"}),
        ("ledger spend_change", {"db.operation.name": "spend_change", "vps_snapshots.ledger.counted": True}),
        ("ledger spend_change", {"db.operation.name": "spend_change", "vps_snapshots.ledger.counted": False}),
    ]
    assert {(s.attributes or {})["db.system.name"] for s in spans} == {"memory"}
    assert leaks(spans, ["secret-key-0123", "plan-digest-0123", approval, "alice", "static:bot"]) == []


def test_the_secret_scan_finds_a_secret_in_each_of_its_encodings() -> None:
    import base64
    from urllib.parse import quote

    secret = "s3cr3t/+token=?&"
    for prefix in ("", "a", "ab"):
        wrapped = f"{prefix}{secret}tail".encode()
        for text in (base64.b64encode(wrapped).decode(), base64.urlsafe_b64encode(wrapped).decode()):
            assert any(form in text for form in encodings(secret)), (prefix, text)
    assert any(form in f"x={quote(secret, safe='')}" for form in encodings(secret))


def test_the_traced_ledger_passes_on_every_call_of_the_ledger() -> None:
    # A call the wrapper lacks would be missing only where traces are on: every member of the port is passed on.
    from vps_snapshots_mcp.state import ConsentLedger
    from vps_snapshots_mcp.state.traced import TracedLedger

    port = {name for name in vars(ConsentLedger) if not name.startswith("_")}
    assert port <= set(vars(TracedLedger)), sorted(port - set(vars(TracedLedger)))


def test_under_a_span_nobody_samples_this_server_makes_no_span_and_under_a_sampled_one_it_does() -> None:
    with recording() as exported:
        untraced_parent = SpanContext(trace_id=5, span_id=6, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
        with trace.use_span(NonRecordingSpan(untraced_parent)):
            assert tracing.untraced()
            with tracing.span("consent restore") as s, tracing.http_client_span("GET", "/x/", "h", 1, resend=0) as h:
                assert s is h is INVALID_SPAN  # nothing made: the shared no-op
        sampled_parent = SpanContext(trace_id=5, span_id=6, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        with trace.use_span(NonRecordingSpan(sampled_parent)):  # a client's sampled traceparent, say
            assert not tracing.untraced()
            with tracing.span("consent restore") as s:
                assert s.is_recording()
        assert [span.name for span in exported.get_finished_spans()] == ["consent restore"]
