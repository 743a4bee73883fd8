"""A provider that answers in another encoding than UTF-8, or encodes the token, or sends numbers JSON has not.

Each test is an attack first: it failed before the defence it names was built.
Redaction is decided on the text the answer decodes to, and nothing the provider
sends can hide the token from it or make a result that cannot be serialised.
"""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import unquote

import pytest
from mcp import Client
from mcp_types import CallToolResult, LoggingMessageNotificationParams
from pydantic import SecretStr

from vps_snapshots_mcp.compose import build_server
from vps_snapshots_mcp.protocol.server import SnapshotsServer
from vps_snapshots_mcp.provider.client import asgi_transport
from vps_snapshots_mcp.provider.text import RedactingFilter, clean, hides_encoded
from vps_snapshots_mcp.settings import Settings
from vps_snapshots_mcp.simulator import Fault, ProviderState, create_app
from vps_snapshots_mcp.simulator.hostile import Rewrite, reencoded, replacing, rewriting
from vps_snapshots_mcp.simulator.state import SimSnapshot

from .support.mcp_client import connected, text_of
from .support.world import BASE_URL, NOW, TOKEN, SimTime

pytestmark = [
    pytest.mark.anyio,
    # The client's logging/setLevel is deprecated by 2026-07-28; 2025-11-25 hosts still send it, so the tests do.
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

CODECS = ["utf-16-le", "utf-16-be", "utf-32-le", "utf-16", "utf-32-be"]


def percent_encoded(text: str, *, upper: bool, every: int = 1) -> str:
    """`text` with every `every`-th character written as `%xx` (or `%XX`)."""
    return "".join(
        (f"%{ord(c):02X}" if upper else f"%{ord(c):02x}") if i % every == 0 else c for i, c in enumerate(text)
    )


def holds_token(text: str) -> bool:
    """Whether `text` holds the provider token in any spacing, escaping or percent-encoding a reader could undo."""
    squeezed = re.sub(r"\\u0000|\\x00|[\x00\s]", "", text)
    forms = {squeezed, unquote(squeezed), unquote(unquote(squeezed))}
    return any(TOKEN.lower() in form.lower() for form in forms)


def test_the_token_finder_finds_what_it_must() -> None:
    assert holds_token(f"a Bearer {TOKEN}") and holds_token(" ".join(TOKEN)) and holds_token("\x00".join(TOKEN))
    assert holds_token(json.dumps("\x00".join(TOKEN))) and holds_token(percent_encoded(TOKEN, upper=False))
    assert holds_token(percent_encoded(TOKEN, upper=True, every=3)) and holds_token(TOKEN.upper())
    assert holds_token(percent_encoded(percent_encoded(TOKEN, upper=True), upper=True))
    assert not holds_token("Bearer [redacted]")


def _server(
    provider: ProviderState, sim_time: SimTime, rewrite: Rewrite, *, errors_only: bool = False
) -> SnapshotsServer:
    """A server whose provider is the simulator behind `rewrite`, a proxy that re-writes every answer (or error)."""
    app = rewriting(create_app(provider, token=TOKEN), rewrite, when=lambda status: status >= 400 or not errors_only)
    return build_server(
        Settings(api_token=SecretStr(TOKEN), api_url=BASE_URL),
        transport=asgi_transport(app),
        timing=sim_time.timing(),
    )


def _seen(result: CallToolResult) -> str:
    return json.dumps(result.model_dump(mode="json"))


def _assert_coded_refusal(result: CallToolResult, code: str = "upstream_error") -> None:
    text = text_of(result)
    assert result.is_error and text.startswith(f"{code}: "), text
    assert "Error serializing" not in text and "Traceback" not in text and len(text) < 400, text
    assert not holds_token(_seen(result)), text


# --- 1. an answer that is not UTF-8 is refused, whatever it holds ------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
async def test_a_list_in_utf16_or_utf32_echoing_the_token_is_refused_without_it(
    provider: ProviderState, sim_time: SimTime, codec: str
) -> None:
    provider.snapshots[777] = SimSnapshot(
        777, 12345, f"echo Bearer {TOKEN}", created_at=NOW, size_mb=1, description=f"Authorization: Bearer {TOKEN}"
    )
    async with connected(_server(provider, sim_time, reencoded(codec))) as client:
        listed = await client.call_tool("list_snapshots", {})
        one = await client.call_tool("get_snapshot", {"snapshot_id": 777})
        preview = await client.call_tool("delete_snapshot", {"snapshot_id": 777})
    for result in (listed, one, preview):
        _assert_coded_refusal(result)
        assert "not UTF-8" in text_of(result) and text_of(result).endswith("Nothing was changed.")
    assert len(provider.requests_to("GET")) == 3 and provider.mutations == []


@pytest.mark.parametrize(
    ("codec", "name"),
    [("utf-16-be", "a\udc80b"), ("utf-16-be", "\ud880x"), ("utf-16-le", "bad\ud800\u00a9"), ("utf-16-le", "x\ud800")],
)
async def test_a_lone_surrogate_in_utf16_is_a_coded_error_not_a_serialisation_failure(
    provider: ProviderState, sim_time: SimTime, codec: str, name: str
) -> None:
    provider.snapshots[777] = SimSnapshot(777, 12345, name, created_at=NOW, size_mb=1)
    async with connected(_server(provider, sim_time, reencoded(codec))) as client:
        listed = await client.call_tool("list_snapshots", {})
        preview = await client.call_tool("delete_snapshot", {"snapshot_id": 777})
    _assert_coded_refusal(listed)
    _assert_coded_refusal(preview)
    assert provider.mutations == []


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-16"])
@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.error(500, f"nope: Bearer {TOKEN}"), "upstream_error"),
        (Fault.text(502, f"nope {TOKEN}"), "upstream_error"),
        (Fault.error(400, f"bad request from {TOKEN}"), "invalid_request"),
        (Fault.field_errors(403, f"forbidden for {TOKEN}"), "unauthorized"),
    ],
)
async def test_an_error_body_in_utf16_is_quoted_without_the_token_in_any_spacing(
    provider: ProviderState, sim_time: SimTime, codec: str, fault: Fault, code: str
) -> None:
    provider.inject(Fault(**{**fault.__dict__, "method": "POST"}))
    async with connected(_server(provider, sim_time, reencoded(codec), errors_only=True)) as client:
        result = await client.call_tool("create_snapshot", {"server_id": 12345, "name": "x"})
    _assert_coded_refusal(result, code)
    assert " n o p e" not in text_of(result) and "\\u0000" not in text_of(result)
    assert len(provider.requests_to("POST")) == 1


# --- 2. an encoded token in a link reaches no log and no notification ----------------------------------------


@pytest.mark.parametrize(
    "encoded",
    [
        percent_encoded(TOKEN, upper=True),
        percent_encoded(TOKEN, upper=False),
        percent_encoded(TOKEN, upper=True, every=2),
        percent_encoded(TOKEN, upper=False, every=5),
        percent_encoded(percent_encoded(TOKEN, upper=True, every=3), upper=False, every=4),
    ],
)
@pytest.mark.parametrize("where", ["query", "path"])
async def test_a_percent_encoded_token_in_a_next_link_reaches_no_log_record_or_notification(
    provider: ProviderState, sim_time: SimTime, caplog: pytest.LogCaptureFixture, encoded: str, where: str
) -> None:
    caplog.set_level(logging.DEBUG)
    provider.page_size = 2
    if where == "query":
        rewrite = replacing(b"page=2", f"page=2&cursor={encoded}".encode())
    else:
        rewrite = replacing(b"/snapshots/?page=2", f"/snapshots/{encoded}/?page=2".encode())
    received: list[LoggingMessageNotificationParams] = []

    async def collect(params: LoggingMessageNotificationParams) -> None:
        received.append(params)

    server = _server(provider, sim_time, rewrite)
    async with Client(server, mode="legacy", logging_callback=collect) as client:
        await client.set_logging_level("debug")
        result = await client.call_tool("list_snapshots", {})
    assert not holds_token(_seen(result)), text_of(result)
    if where == "query":  # every page read: the cursor is the provider's business
        assert result.structured_content is not None and result.structured_content["count"] == len(provider.snapshots)
        assert len(provider.requests_to("GET")) == 5
    else:  # the link led nowhere the simulator knows (and it answered 404 before recording it)
        assert text_of(result).startswith("not_found: ") and len(provider.requests_to("GET")) == 1
    assert any(r.level == "debug" for r in received)  # the session did get the client's debug lines
    for params in received:
        assert not holds_token(json.dumps(params.model_dump(mode="json"))), params
    for record in caplog.records:
        assert not holds_token(record.getMessage()), record.getMessage()
    assert not holds_token(caplog.text)


# --- 3. numbers JSON has not are refused -----------------------------------------------------------------------


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1E+400", b"1" * 400 + b".5"])
async def test_a_number_that_is_not_finite_is_refused_not_written_bare(
    provider: ProviderState, sim_time: SimTime, number: bytes
) -> None:
    provider.snapshots[777] = SimSnapshot(777, 12345, "odd", created_at=NOW, size_mb=424242)
    async with connected(_server(provider, sim_time, replacing(b"424242", number))) as client:
        listed = await client.call_tool("list_snapshots", {})
        one = await client.call_tool("get_snapshot", {"snapshot_id": 777})
    for result in (listed, one):
        _assert_coded_refusal(result)
        assert result.structured_content is None
        assert "not finite" in text_of(result), text_of(result)


async def test_finite_numbers_and_plain_utf8_still_pass(provider: ProviderState, sim_time: SimTime) -> None:
    provider.snapshots[777] = SimSnapshot(777, 12345, "caf\u00e9 \u2603", created_at=NOW, size_mb=424242)
    async with connected(_server(provider, sim_time, replacing(b"424242", b"1.5e3"))) as client:
        one = await client.call_tool("get_snapshot", {"snapshot_id": 777})
    assert not one.is_error and one.structured_content is not None, text_of(one)
    assert one.structured_content["size_mb"] == 1500.0 and one.structured_content["name"] == "caf\u00e9 \u2603"
    assert json.loads(text_of(one)) == one.structured_content  # the text and structured copies agree


# --- 4. the log filter: the last gate for the server's own lines ----------------------------------------------


@pytest.mark.parametrize(
    "encoded",
    [
        percent_encoded(TOKEN, upper=True),
        percent_encoded(TOKEN, upper=False, every=3),
        percent_encoded(percent_encoded(TOKEN, upper=True), upper=True),
        "Bearer%20" + percent_encoded(TOKEN, upper=False, every=2),
    ],
)
def test_the_log_filter_removes_a_percent_encoded_secret_from_messages_and_tracebacks(encoded: str) -> None:
    log_filter = RedactingFilter(TOKEN)
    plain = logging.LogRecord("x", logging.DEBUG, __file__, 1, "GET %s -> %d", (f"/a/{encoded}/?p=2", 404), None)
    try:
        raise RuntimeError(f"could not follow /a/{encoded}/")
    except RuntimeError as exc:
        crashed = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), (type(exc), exc, None))
    lines = []
    for record in (plain, crashed):
        assert log_filter.filter(record)
        lines.append(logging.Formatter("%(message)s").format(record))
    assert not any(holds_token(line) for line in lines), lines
    assert "[redacted]" in lines[0] and lines[0].endswith("/?p=2 -> 404") and "details withheld" in lines[1]


def test_a_line_decoded_to_remove_a_secret_gains_no_new_line() -> None:
    log_filter = RedactingFilter(TOKEN)
    forged = f"/a/%0A2026-01-01 INFO fake%0D%0Aline%E2%80%A8/{percent_encoded(TOKEN, upper=True)}"
    record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "GET %s", (forged,), None)
    assert log_filter.filter(record)
    line = record.getMessage()
    assert "[redacted]" in line and not holds_token(line)
    assert "\n" not in line and "\r" not in line and "\u2028" not in line and "%0A" in line


def test_text_without_a_secret_keeps_its_percent_escapes() -> None:
    text = "/api/v1/snapshots/?cursor=%7B%22a%22%3A1%7D&done=50%"
    assert clean(text, TOKEN) == text and not hides_encoded(text, TOKEN)


# --- 5. no answer makes an uncoded error ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "link",
    ["http://[::1", "https://provider.test/api/v1/snapshots/?a=\x00b", "/api/v1/snapshots/" + "a" * 70_000, "?p=\x7f"],
)
async def test_a_next_link_that_is_no_url_is_a_coded_error(
    provider: ProviderState, sim_time: SimTime, caplog: pytest.LogCaptureFixture, link: str
) -> None:
    provider.page_size = 2
    as_json = json.dumps(link)[1:-1].encode()  # as the provider writes it inside its JSON string
    original = b"https://provider.test/api/v1/snapshots/?page=2"
    async with connected(_server(provider, sim_time, replacing(original, as_json))) as client:
        result = await client.call_tool("list_snapshots", {})
    _assert_coded_refusal(result)
    assert "pagination link" in text_of(result) and text_of(result).endswith("Nothing was changed.")
    assert len(provider.requests_to("GET")) == 1
    assert not any(r.exc_info for r in caplog.records)  # no traceback


@pytest.mark.parametrize("retry_after", ["\u00b2", "\u00b9\u00b2", "1\u00b3"])
async def test_a_retry_after_of_non_ascii_digits_is_no_uncoded_error(
    provider: ProviderState, sim_time: SimTime, retry_after: str
) -> None:
    # str.isdigit() holds for superscripts, which float() refuses; Latin-1 header bytes decode to them.
    provider.inject(Fault.rate_limit(retry_after, times=3))
    async with connected(_server(provider, sim_time, lambda body: body)) as client:
        result = await client.call_tool("list_snapshots", {})
    _assert_coded_refusal(result, "rate_limited")
    assert len(provider.requests_to("GET")) == 3
