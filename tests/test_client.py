"""SnapshotsClient against the simulator, in process: endpoints, errors, pagination, retries."""

from __future__ import annotations

import inspect
import json
from datetime import timedelta
from typing import Any, get_args

import anyio
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vps_snapshots_mcp.errors import (
    STATUS_ERRORS,
    Advice,
    AdviceKind,
    InvalidRequestError,
    InvalidStateError,
    NotFoundError,
    ProviderConnectionError,
    QuotaExceededError,
    RateLimitedError,
    UnauthorizedError,
    UpstreamError,
)
from vps_snapshots_mcp.models import Snapshot
from vps_snapshots_mcp.protocol.provider_errors import WORDS, Worded, word
from vps_snapshots_mcp.provider import SnapshotsProvider
from vps_snapshots_mcp.provider.client import SnapshotsClient
from vps_snapshots_mcp.provider.http import RetryPolicy, asgi_transport, clean_text, parse_retry_after
from vps_snapshots_mcp.settings import Settings
from vps_snapshots_mcp.simulator import Fault, ProviderState, create_app
from vps_snapshots_mcp.timing import Timing

from .support.world import BASE_URL, NOW, TOKEN, SleepRecorder, make_client

pytestmark = pytest.mark.anyio


# --- endpoints ------------------------------------------------------------------------------------


async def test_list_returns_every_snapshot_with_the_documented_fields(
    client: SnapshotsClient, provider: ProviderState
) -> None:
    snapshots = await client.list_snapshots()
    assert len(snapshots) == 9
    by_id = {s.id: s for s in snapshots}
    assert by_id[801].model_dump() == {
        "id": 801,
        "server": {"id": 12345, "name": "web-server-01"},
        "name": "pre-migration-snapshot",
        "status": "completed",
        "size_mb": 5120,
        "created_at": "2025-01-15T18:30:00Z",
        "description": "Before major migration",
    }
    [request] = provider.requests
    assert request.content_type == "application/json"
    assert (request.method, request.path, request.query, request.authorized) == (
        "GET",
        "/api/v1/snapshots/",
        "",
        True,
    )


async def test_list_filters_by_server_with_the_query_parameter(
    client: SnapshotsClient, provider: ProviderState
) -> None:
    snapshots = await client.list_snapshots(server_id=12345)
    assert [s.id for s in snapshots] == [801, 798]
    assert provider.requests[-1].query == "server_id=12345"


async def test_list_follows_next_links_across_pages(client: SnapshotsClient, provider: ProviderState) -> None:
    provider.page_size = 2
    snapshots = await client.list_snapshots()
    assert len(snapshots) == 9
    assert len({s.id for s in snapshots}) == 9
    assert [r.query for r in provider.requests] == ["", "page=2", "page=3", "page=4", "page=5"]


async def test_list_keeps_the_server_filter_on_every_page(client: SnapshotsClient, provider: ProviderState) -> None:
    provider.page_size = 1
    snapshots = await client.list_snapshots(server_id=12345)
    assert [s.id for s in snapshots] == [801, 798]
    assert [r.query for r in provider.requests] == ["server_id=12345", "server_id=12345&page=2"]


async def test_get_snapshot_finds_it_through_the_list(client: SnapshotsClient, provider: ProviderState) -> None:
    snapshot = await client.get_snapshot(798)
    assert snapshot.name == "weekly-snapshot-2025-01-08"
    assert [r.path for r in provider.requests] == ["/api/v1/snapshots/"]


async def test_get_unknown_snapshot_is_not_found(client: SnapshotsClient) -> None:
    with pytest.raises(NotFoundError, match="snapshot 4242 does not exist"):
        await client.get_snapshot(4242)


async def test_create_posts_the_exact_body_and_parses_the_201(client: SnapshotsClient, provider: ProviderState) -> None:
    created = await client.create_snapshot(12345, "before-update", "Before apt upgrade")
    assert created.snapshot.status == "in_progress"
    assert created.snapshot.size_mb is None
    assert created.snapshot.server is not None and created.snapshot.server.name == "web-server-01"
    assert created.message and "3-10 minutes" in created.message
    [post] = provider.requests_to("POST")
    assert post.path == "/api/v1/snapshots/"
    assert post.body == {"server_id": 12345, "name": "before-update", "description": "Before apt upgrade"}


async def test_create_without_description_sends_no_description(
    client: SnapshotsClient, provider: ProviderState
) -> None:
    await client.create_snapshot(12345, "plain")
    assert provider.requests_to("POST")[0].body == {"server_id": 12345, "name": "plain"}


async def test_create_on_unknown_server_is_not_found(client: SnapshotsClient) -> None:
    with pytest.raises(NotFoundError, match="server 999 does not exist"):
        await client.create_snapshot(999, "x")


async def test_create_past_the_limit_is_quota_exceeded(client: SnapshotsClient) -> None:
    with pytest.raises(QuotaExceededError, match="Snapshot limit reached"):
        await client.create_snapshot(34567, "one-too-many")


async def test_create_with_an_invalid_name_is_invalid_request_quoting_the_provider(
    client: SnapshotsClient,
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await client.create_snapshot(12345, "bad name!")
    assert "name: Invalid parameters" in str(caught.value)
    assert str(caught.value).startswith("invalid_request: ")


async def test_restore_parses_the_documented_answer(client: SnapshotsClient, provider: ProviderState) -> None:
    started = await client.restore_snapshot(801)
    assert started.status == "success"
    assert started.server is not None and started.server.status == "restoring"
    assert started.snapshot is not None and started.snapshot.created_at == "2025-01-15T18:30:00Z"
    assert [r.path for r in provider.mutations] == ["/api/v1/snapshots/801/restore/"]
    assert provider.mutations[0].body is None


async def test_restore_while_restoring_is_invalid_state(client: SnapshotsClient) -> None:
    await client.restore_snapshot(801)
    with pytest.raises(InvalidStateError, match="not in a valid state"):
        await client.restore_snapshot(798)


async def test_restore_of_an_unfinished_snapshot_is_invalid_state(client: SnapshotsClient) -> None:
    created = await client.create_snapshot(12345, "fresh")
    with pytest.raises(InvalidStateError, match="not completed"):
        await client.restore_snapshot(created.snapshot.id)


async def test_restore_unknown_snapshot_is_not_found(client: SnapshotsClient) -> None:
    with pytest.raises(NotFoundError, match="snapshot 5 does not exist"):
        await client.restore_snapshot(5)


async def test_delete_removes_the_snapshot(client: SnapshotsClient, provider: ProviderState) -> None:
    await client.delete_snapshot(798)
    assert [s.id for s in await client.list_snapshots(12345)] == [801]
    assert [(r.method, r.path) for r in provider.mutations] == [("DELETE", "/api/v1/snapshots/798/")]


async def test_delete_unknown_snapshot_is_not_found(client: SnapshotsClient) -> None:
    with pytest.raises(NotFoundError):
        await client.delete_snapshot(4242)


async def test_a_wrong_token_is_unauthorized_and_never_echoed(provider: ProviderState, sleeps: SleepRecorder) -> None:
    wrong = "wrong-token-Kd93hf"
    async with make_client(provider, sleeps, token=wrong) as client:
        with pytest.raises(UnauthorizedError) as caught:
            await client.list_snapshots()
    assert caught.value.status == 401 and "VPS_API_TOKEN" not in str(caught.value)  # the provider names no setting
    assert "VPS_API_TOKEN" in str(word(caught.value))  # the protocol layer does
    assert wrong not in str(caught.value) and TOKEN not in str(caught.value)
    assert provider.requests[0].authorized is False


# --- error bodies ---------------------------------------------------------------------------------


async def test_an_html_error_page_is_never_quoted(client: SnapshotsClient, provider: ProviderState) -> None:
    provider.inject(Fault.html_page(500))
    with pytest.raises(UpstreamError) as caught:
        await client.list_snapshots()
    message = str(caught.value)
    assert message.startswith("upstream_error: ")
    assert "HTML error page" in message
    assert "<" not in message and "nginx" not in message and "script" not in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"detail": "Snapshot limit reached."}, "Snapshot limit reached."),
        ({"error": "server busy"}, "server busy"),
        ({"message": "try later"}, "try later"),
        ({"error": {"message": "nested reason"}}, "nested reason"),
        ({"name": ["too long"], "server_id": ["required"]}, "name: too long; server_id: required"),
    ],
)
async def test_the_provider_message_is_taken_from_common_fields(body: dict[str, Any], expected: str) -> None:
    async def answer(request: Request) -> JSONResponse:
        return JSONResponse(body, status_code=500)

    app = Starlette(routes=[Route("/api/v1/snapshots/", answer)])
    async with SnapshotsClient(base_url=BASE_URL, token=SecretStr(TOKEN), transport=asgi_transport(app)) as client:
        with pytest.raises(UpstreamError) as caught:
            await client.list_snapshots()
    assert f"(provider: {json.dumps(expected)})" in str(caught.value)
    assert caught.value.said == expected and caught.value.status == 500  # the same facts, as fields


async def test_a_plain_text_error_is_quoted_cleaned_and_truncated(
    client: SnapshotsClient, provider: ProviderState
) -> None:
    provider.inject(Fault.text(500, "disk\x1b failure\x07\n\n" + "x" * 500))
    with pytest.raises(UpstreamError) as caught:
        await client.list_snapshots()
    message = str(caught.value)
    assert "disk failure" in message and "\x1b" not in message and "\n" not in message
    assert len(message) < 400


async def test_an_error_body_with_a_nul_is_not_quoted(client: SnapshotsClient, provider: ProviderState) -> None:
    # A NUL is how UTF-16 shows through a UTF-8 decoder: quoted with NULs as spaces, it spelled out the token.
    provider.inject(Fault.text(500, "\x00".join("disk failure")))
    with pytest.raises(UpstreamError) as caught:
        await client.list_snapshots()
    assert (
        str(caught.value)
        == "upstream_error: the provider failed with HTTP 500; try again shortly. Nothing was changed."
    )


async def test_malformed_json_is_an_upstream_error(client: SnapshotsClient, provider: ProviderState) -> None:
    provider.inject(Fault.malformed_json())
    with pytest.raises(UpstreamError, match="malformed JSON"):
        await client.list_snapshots()


async def test_a_list_of_the_wrong_shape_is_an_upstream_error(client: SnapshotsClient, provider: ProviderState) -> None:
    provider.inject(Fault.wrong_shape())
    with pytest.raises(UpstreamError, match="unexpected shape"):
        await client.list_snapshots()


async def test_a_failed_post_says_it_may_or_may_not_have_happened(
    client: SnapshotsClient, provider: ProviderState
) -> None:
    provider.inject(Fault.error(500, method="POST"))
    with pytest.raises(UpstreamError, match="may or may not have started"):
        await client.create_snapshot(12345, "x")


async def test_a_429_carries_its_status_and_the_wait_asked_for(
    client: SnapshotsClient, provider: ProviderState, sleeps: SleepRecorder
) -> None:
    provider.inject(Fault.rate_limit("45", times=3))
    with pytest.raises(RateLimitedError) as caught:
        await client.list_snapshots()
    assert (caught.value.status, caught.value.retry_after_s, caught.value.advice) == (429, 45.0, None)


async def test_a_request_with_a_free_slot_is_sent_without_a_turn_of_the_event_loop(provider: ProviderState) -> None:
    # The cap on requests in flight costs nothing until it is reached: taking a free slot by yielding to the
    # event loop had cost a turn of the loop on every request (about 70 us of a 2.5 ms call on 2 cores).
    # Another task, started just before, runs only when the request yields: it must not have run when the
    # request reaches the provider.
    simulator = create_app(provider, token=TOKEN)
    other_ran_first: list[bool] = []
    other_ran = False

    async def provider_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            other_ran_first.append(other_ran)
        await simulator(scope, receive, send)

    async def other() -> None:
        nonlocal other_ran
        other_ran = True

    client = SnapshotsClient(base_url=BASE_URL, token=SecretStr(TOKEN), transport=asgi_transport(provider_app))
    async with anyio.create_task_group() as group:
        group.start_soon(other)
        assert [s.id for s in await client.list_snapshots(12345)] == [801, 798]
    assert other_ran_first == [False]
    await client.aclose()


def test_the_statuses_that_name_an_error_are_declared_once_on_the_tree() -> None:
    declared = {401: UnauthorizedError, 403: UnauthorizedError, 404: NotFoundError, 429: RateLimitedError}
    assert dict(STATUS_ERRORS) == declared


def test_the_client_starts_from_the_defaults_the_settings_declare() -> None:
    defaults = inspect.signature(SnapshotsClient).parameters
    settings = Settings(api_token=SecretStr(TOKEN))
    for name in ("timeout_s", "connect_timeout_s", "max_concurrency", "max_response_bytes", "max_records"):
        assert defaults[name].default == getattr(settings, name), name


# --- the tools' words, given by the protocol layer ---------------------------------------------------


def test_every_advice_the_provider_gives_has_words() -> None:
    assert set(WORDS) == set(get_args(AdviceKind))


def test_advice_is_worded_where_it_belongs_and_only_once() -> None:
    head = "the provider accepted the snapshot of server 7 but answered with another, so what it made is uncertain."
    error = UpstreamError(head, status=201, advice=Advice("list_server", at=len(head), server_id=7))
    expected = f"upstream_error: {head} Call list_snapshots for server 7 before trying again."
    assert str(word(error)) == expected and error.advice is None
    assert str(word(error)) == expected


async def test_the_client_is_the_provider_port_and_its_worded_form_too(
    client: SnapshotsClient, provider: ProviderState
) -> None:
    port: SnapshotsProvider = client  # mypy checks the shape
    worded: SnapshotsProvider = Worded(port)
    with pytest.raises(NotFoundError) as caught:
        await worded.get_snapshot(4242)
    expected = "snapshot 4242 does not exist; call list_snapshots to see the snapshots there are. Nothing was changed."
    assert caught.value.message == expected
    await worded.aclose()


# --- retries --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_get_is_retried_on_gateway_errors(
    client: SnapshotsClient, provider: ProviderState, sleeps: SleepRecorder, status: int
) -> None:
    provider.inject(Fault.error(status))
    assert len(await client.list_snapshots()) == 9
    assert len(provider.requests) == 2
    assert sleeps.delays == [0.375]  # equal jitter at rand()=0.5 of the first 0.5 s step


async def test_get_gives_up_after_three_attempts_with_growing_backoff(
    client: SnapshotsClient, provider: ProviderState, sleeps: SleepRecorder
) -> None:
    provider.inject(Fault.html_page(502, times=5))
    with pytest.raises(UpstreamError, match="HTTP 502"):
        await client.list_snapshots()
    assert len(provider.requests) == 3
    assert sleeps.delays == [0.375, 0.75]


async def test_500_is_not_retried(client: SnapshotsClient, provider: ProviderState, sleeps: SleepRecorder) -> None:
    provider.inject(Fault.error(500))
    with pytest.raises(UpstreamError):
        await client.list_snapshots()
    assert len(provider.requests) == 1 and sleeps.delays == []


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_post_is_never_retried(
    client: SnapshotsClient, provider: ProviderState, sleeps: SleepRecorder, status: int
) -> None:
    provider.inject(Fault.error(status, method="POST", times=3))
    with pytest.raises((UpstreamError, RateLimitedError)):
        await client.create_snapshot(12345, "once")
    with pytest.raises((UpstreamError, RateLimitedError)):
        await client.restore_snapshot(801)
    assert len(provider.requests_to("POST")) == 2
    assert sleeps.delays == []


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_delete_is_never_retried(
    client: SnapshotsClient, provider: ProviderState, sleeps: SleepRecorder, status: int
) -> None:
    # A delete the user consented to is sent at most once, by the client's own policy: nothing to narrow.
    provider.inject(Fault.error(status, method="DELETE", times=3))
    with pytest.raises((UpstreamError, RateLimitedError)):
        await client.delete_snapshot(798)
    assert len(provider.requests_to("DELETE")) == 1 and sleeps.delays == []
    assert 798 in provider.snapshots


async def test_a_delete_whose_answer_was_lost_is_reported_unsure_and_not_sent_again(
    client: SnapshotsClient, provider: ProviderState
) -> None:
    provider.inject(Fault.lost_answer(502, method="DELETE"))
    with pytest.raises(UpstreamError, match="may or may not have been deleted") as caught:
        await client.delete_snapshot(798)
    assert caught.value.advice is not None and caught.value.advice.kind == "check_list"  # look before trying again
    assert len(provider.requests_to("DELETE")) == 1
    assert 798 not in provider.snapshots  # it did happen, which is why the error does not say it did not


async def test_429_honours_retry_after_seconds(
    client: SnapshotsClient, provider: ProviderState, sleeps: SleepRecorder
) -> None:
    provider.inject(Fault.rate_limit("3"))
    await client.list_snapshots()
    assert sleeps.delays == [3.0]


async def test_429_honours_retry_after_as_an_http_date(
    client: SnapshotsClient, provider: ProviderState, sleeps: SleepRecorder
) -> None:
    provider.inject(Fault.rate_limit("Fri, 27 Nov 2026 12:00:07 GMT"))
    await client.list_snapshots()
    assert sleeps.delays == [7.0]


async def test_retry_after_zero_still_backs_off(
    client: SnapshotsClient, provider: ProviderState, sleeps: SleepRecorder
) -> None:
    provider.inject(Fault.rate_limit("0", times=2))
    await client.list_snapshots()
    assert sleeps.delays == [0.375, 0.75]


async def test_a_retry_after_beyond_the_cap_stops_without_waiting(
    client: SnapshotsClient, provider: ProviderState, sleeps: SleepRecorder
) -> None:
    provider.inject(Fault.rate_limit("120"))
    with pytest.raises(RateLimitedError, match="wait 120 s") as caught:
        await client.list_snapshots()
    assert caught.value.retry_after_s == 120.0
    assert len(provider.requests) == 1 and sleeps.delays == []


async def test_rate_limited_after_all_attempts(
    client: SnapshotsClient, provider: ProviderState, sleeps: SleepRecorder
) -> None:
    provider.inject(Fault.rate_limit("1", times=3))
    with pytest.raises(RateLimitedError):
        await client.list_snapshots()
    assert len(provider.requests) == 3 and sleeps.delays == [1.0, 1.0]


async def test_connection_refused_is_retried_then_reported(sleeps: SleepRecorder) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with SnapshotsClient(
        base_url=f"http://127.0.0.1:{port}/api/v1",
        token=SecretStr(TOKEN),
        timing=Timing(sleep=sleeps),
        rand=lambda: 0.5,
    ) as client:
        with pytest.raises(ProviderConnectionError, match="could not reach the provider") as caught:
            await client.list_snapshots()
    assert "Nothing was changed" in str(caught.value)
    assert sleeps.delays == [0.375, 0.75]


# --- pagination safety ----------------------------------------------------------------------------


async def test_a_next_link_to_another_host_is_not_followed() -> None:
    seen: list[str] = []

    async def page(request: Request) -> JSONResponse:
        seen.append(str(request.url))
        return JSONResponse({"count": 9, "next": "https://elsewhere.test/steal?page=2", "results": []})

    app = Starlette(routes=[Route("/api/v1/snapshots/", page)])
    async with SnapshotsClient(base_url=BASE_URL, token=SecretStr(TOKEN), transport=asgi_transport(app)) as client:
        with pytest.raises(UpstreamError, match="outside the API"):
            await client.list_snapshots()
    assert seen == [f"{BASE_URL}/snapshots/"]


async def test_a_pagination_loop_is_detected() -> None:
    async def page(request: Request) -> JSONResponse:
        return JSONResponse({"count": 9, "next": f"{BASE_URL}/snapshots/", "results": []})

    app = Starlette(routes=[Route("/api/v1/snapshots/", page)])
    async with SnapshotsClient(base_url=BASE_URL, token=SecretStr(TOKEN), transport=asgi_transport(app)) as client:
        with pytest.raises(UpstreamError, match="loop"):
            await client.list_snapshots()


# --- tolerant parsing -----------------------------------------------------------------------------


async def test_unknown_fields_statuses_and_null_sizes_are_tolerated() -> None:
    body = {
        "count": 2,
        "results": [
            {"id": 1, "server": {"id": 7, "name": "a", "region": "x"}, "name": "n", "status": "archived",
             "size_mb": None, "created_at": "2025-01-01T00:00:00Z", "tags": ["t"]},
            {"id": "not-an-id", "name": "broken"},
        ],
    }  # fmt: skip

    async def page(request: Request) -> JSONResponse:
        return JSONResponse(body)

    app = Starlette(routes=[Route("/api/v1/snapshots/", page)])
    async with SnapshotsClient(base_url=BASE_URL, token=SecretStr(TOKEN), transport=asgi_transport(app)) as client:
        [snapshot] = await client.list_snapshots()
    assert snapshot == Snapshot(
        id=1, server={"id": 7, "name": "a"}, name="n", status="archived", created_at="2025-01-01T00:00:00Z"
    )


# --- helpers --------------------------------------------------------------------------------------


def test_parse_retry_after_reads_seconds_dates_and_rejects_garbage() -> None:
    assert parse_retry_after("5", now=NOW) == 5.0
    assert parse_retry_after("Fri, 27 Nov 2026 12:01:00 GMT", now=NOW) == 60.0
    assert parse_retry_after("Fri, 27 Nov 2026 11:00:00 GMT", now=NOW) == 0.0
    assert parse_retry_after("soon", now=NOW) is None
    assert parse_retry_after(None, now=NOW) is None


def test_backoff_grows_exponentially_within_jitter_bounds() -> None:
    policy = RetryPolicy()
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (6, 8.0), (10, 8.0)]:
        assert policy.backoff_s(attempt, lambda: 0.0) == ceiling / 2
        assert policy.backoff_s(attempt, lambda: 1.0) == ceiling


def test_clean_text_folds_whitespace_and_truncates() -> None:
    assert clean_text("a\n\tb\x1b[31m c") == "a b [31m c"
    assert clean_text("y" * 300).endswith("…") and len(clean_text("y" * 300)) == 200


async def test_the_clock_moves_snapshots_to_completed(client: SnapshotsClient, provider: ProviderState) -> None:
    from vps_snapshots_mcp.simulator import ManualClock

    assert isinstance(provider.clock, ManualClock)
    created = await client.create_snapshot(12345, "ticking")
    provider.clock.advance(timedelta(minutes=5).total_seconds())
    done = await client.get_snapshot(created.snapshot.id)
    assert (done.status, done.size_mb) == ("completed", 5120)
