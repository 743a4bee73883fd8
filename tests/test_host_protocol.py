"""What hosts see beyond tools: log records as notifications/message (2025-11-25 only), and coded prompt errors."""

from __future__ import annotations

import logging

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, LoggingMessageNotificationParams

from vps_snapshots_mcp.simulator import Fault, ProviderState

from .support.world import TOKEN, ServerFactory

pytestmark = [
    pytest.mark.anyio,
    # The client's logging/setLevel is deprecated by 2026-07-28; 2025-11-25 hosts still send it, so the tests do.
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]


@pytest.fixture(autouse=True)
def records_made_from_error_up(caplog: pytest.LogCaptureFixture) -> None:
    """The package logger starts above every level these tests ask for: the server must lower it to forward more."""
    caplog.set_level(logging.ERROR, logger="vps_snapshots_mcp")


async def test_a_2025_session_declares_logging_and_gets_records_at_the_level_it_set(
    make_server: ServerFactory, provider: ProviderState
) -> None:
    received: list[LoggingMessageNotificationParams] = []

    async def collect(params: LoggingMessageNotificationParams) -> None:
        received.append(params)

    provider.echo_authorization = True
    provider.ignore_filters = True  # the client logs a warning when it drops other servers' records
    async with Client(make_server(), mode="legacy", logging_callback=collect) as client:
        assert client.server_capabilities.logging is not None
        await client.set_logging_level("error")
        await client.call_tool("list_snapshots", {"server_id": 12345})
        assert received == []  # a warning, below the level this session asked for
        assert not logging.getLogger("vps_snapshots_mcp").isEnabledFor(logging.DEBUG)  # nobody reads them yet
        await client.set_logging_level("debug")
        provider.inject(Fault.error(503, f"echo Bearer {TOKEN}", times=3))
        await client.call_tool("list_snapshots", {"server_id": 12345})
    levels = {(r.level, r.logger) for r in received}
    assert ("debug", "vps_snapshots_mcp.provider.client") in levels and (
        "info",
        "vps_snapshots_mcp.provider.client",
    ) in levels
    assert ("info", "vps_snapshots_mcp.protocol.server") in levels
    assert all(isinstance(r.data, str) and TOKEN not in r.data for r in received)


async def test_the_server_log_level_is_the_default_before_set_level(make_server: ServerFactory) -> None:
    received: list[LoggingMessageNotificationParams] = []

    async def collect(params: LoggingMessageNotificationParams) -> None:
        received.append(params)

    async with Client(make_server(log_level="WARNING"), mode="legacy", logging_callback=collect) as client:
        await client.call_tool("get_snapshot", {"snapshot_id": 4242})  # refused: logged at INFO
    assert received == []
    async with Client(make_server(log_level="INFO"), mode="legacy", logging_callback=collect) as client:
        await client.call_tool("get_snapshot", {"snapshot_id": 4242})
    assert [r.data for r in received] == ["get_snapshot refused or failed: not_found"]


async def test_a_2026_session_sees_no_logging_capability_and_no_set_level(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    received: list[LoggingMessageNotificationParams] = []

    async def collect(params: LoggingMessageNotificationParams) -> None:
        received.append(params)

    async with Client(make_server(), logging_callback=collect) as client:
        assert client.server_capabilities.logging is None
        with pytest.raises(MCPError):
            await client.set_logging_level("debug")
        await client.call_tool("get_snapshot", {"snapshot_id": 4242})
    assert received == []


# --- prompts: a wrong argument is invalid params ---------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "arguments", "expected"),
    [
        (
            "rollback",
            {"server_id": "abc"},
            "invalid_argument: prompt rollback: server_id: input should be a valid integer",
        ),
        ("cleanup_snapshots", {"server_id": "12345", "keep": "-3"}, "keep: input should be greater than or equal to 0"),
        ("rollback", {}, "invalid_argument: prompt rollback: server_id: missing required argument"),
        ("no_such_prompt", {}, 'invalid_argument: there is no prompt "no_such_prompt"; the prompts are safe_update'),
    ],
)
async def test_a_wrong_prompt_argument_is_invalid_params_naming_it(
    make_server: ServerFactory, prompt: str, arguments: dict[str, str], expected: str
) -> None:
    async with Client(make_server()) as client:
        with pytest.raises(MCPError) as caught:
            await client.get_prompt(prompt, arguments)
        good = await client.get_prompt("cleanup_snapshots", {"server_id": "12345", "keep": "3"})
    assert caught.value.error.code == INVALID_PARAMS
    assert expected in caught.value.error.message
    assert "keeping the newest 3" in str(good.messages[0].content)
