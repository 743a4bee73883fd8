"""The SDK seam (`protocol/sdk.py`): each hook works on the installed SDK, and its check fails loudly without it.

A missing hook is shown with a stand-in that lacks it (a class, a module, a chain): the SDK's behaviour
itself is never imitated. docs/sdk-compatibility.md lists the hooks and points here.
"""

from __future__ import annotations

import json
import logging
from importlib.metadata import version
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, cast

import httpx2
import pytest
from mcp.server.lowlevel import Server as LowLevelServer
from mcp.server.mcpserver import Context
from mcp.server.request_state import RequestStateCodec, RequestStateSecurity
from mcp.server.session import ServerSession
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from pydantic import SecretStr

from vps_snapshots_mcp.access import EVERYONE, AccessPolicy
from vps_snapshots_mcp.compose import build_server, compose
from vps_snapshots_mcp.protocol import published, sdk
from vps_snapshots_mcp.protocol.rounds import RoundMemory, sealed_round
from vps_snapshots_mcp.provider.client import asgi_transport
from vps_snapshots_mcp.settings import Settings
from vps_snapshots_mcp.simulator import create_app, seeded_state
from vps_snapshots_mcp.simulator.serve import bind_socket, serving_in_thread

TOKEN = "test-token-Zq8rV2pLx7"
SETTINGS = Settings(api_token=SecretStr(TOKEN), api_url="https://provider.test/api/v1")
MISSING = rf"mcp {version('mcp')} has no "


def missing(hook: str) -> str:
    return MISSING + hook.replace(".", r"\.")


# --- the low-level server --------------------------------------------------------------------------------


def test_the_low_level_server_is_reached_on_the_installed_sdk() -> None:
    server = build_server(SETTINGS)
    lowlevel = sdk.lowlevel_of(server)
    assert isinstance(lowlevel, LowLevelServer)
    assert lowlevel.get_request_handler("logging/setLevel") is not None  # host_logging registered it there


def test_without_the_low_level_server_the_seam_fails_loudly() -> None:
    stand_in = cast(Any, SimpleNamespace(middleware=[]))
    with pytest.raises(RuntimeError, match=missing("MCPServer._lowlevel_server")):
        sdk.lowlevel_of(stand_in)


# --- the input-schema lookup: Mcp-Param-* headers checked against tools.json -------------------------------


def test_the_input_schema_is_answered_from_tools_json_without_loading_the_tools() -> None:
    server = build_server(SETTINGS)
    published_schemas = {
        tool["name"]: tool["inputSchema"]
        for tool in published.published_tools(AccessPolicy.from_settings(SETTINGS), EVERYONE)
    }
    lookup = sdk.lowlevel_of(server).get_tool_input_schema
    assert lookup is server.input_schema
    assert lookup("get_snapshot") == published_schemas["get_snapshot"]
    assert lookup("no_such_tool") is None
    assert server.tools == {}  # nothing was loaded to answer


def test_without_the_input_schema_lookup_the_seam_fails_loudly() -> None:
    stand_in = cast(Any, SimpleNamespace(_lowlevel_server=object.__new__(LowLevelServer)))  # never initialised
    with pytest.raises(RuntimeError, match=missing("Server.get_tool_input_schema")):
        sdk.answer_input_schema(stand_in, lambda name: None)


def test_a_lookup_that_was_replaced_fails_the_start_up_check() -> None:
    server = build_server(SETTINGS)
    sdk.lowlevel_of(server).get_tool_input_schema = None
    security = RequestStateSecurity.ephemeral()
    with pytest.raises(RuntimeError, match=missing("Server.get_tool_input_schema")):
        sdk.check_server(
            server, schema_lookup=server.input_schema, round_memory=RoundMemory, codec=security.codec,
            seen_round=sealed_round,
        )  # fmt: skip


@pytest.fixture
def annotated_tools_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tools.json with `get_snapshot.snapshot_id` designated as the `Mcp-Param-Snapshot` header.

    The published tools.json designates no header, so today the SDK has nothing to check; this copy shows
    that what it checks is what tools.json says.
    """
    tools = json.loads(published.TOOLS_JSON.read_bytes())
    for tool in tools:
        if tool["name"] == "get_snapshot":
            tool["inputSchema"]["properties"]["snapshot_id"]["x-mcp-header"] = "Snapshot"
    annotated = tmp_path / "tools.json"
    annotated.write_text(json.dumps(tools))
    monkeypatch.setattr(published, "TOOLS_JSON", annotated)


@pytest.mark.slow
@pytest.mark.usefixtures("annotated_tools_json")
def test_on_2026_07_28_an_mcp_param_header_that_contradicts_the_body_is_refused() -> None:
    settings = Settings(api_token=SecretStr(TOKEN), api_url="https://provider.test/api/v1", transport="http")
    composed = compose(settings, transport=asgi_transport(create_app(seeded_state(), token=TOKEN)))
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "get_snapshot", "arguments": {"snapshot_id": 1}, "_meta": meta},
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "get_snapshot",
    }
    sock = bind_socket("127.0.0.1", 0)
    with serving_in_thread(composed.http_app(), sock=sock, lifespan="on") as url, httpx2.Client(timeout=30) as http:
        contradicting = http.post(f"{url}/mcp", json=body, headers={**headers, "Mcp-Param-Snapshot": "2"})
        agreeing = http.post(f"{url}/mcp", json=body, headers={**headers, "Mcp-Param-Snapshot": "1"})
    assert contradicting.status_code == 400, contradicting.text
    assert "Mcp-Param-Snapshot" in contradicting.text
    assert agreeing.status_code == 200, agreeing.text


# --- the session a 2025-11-25 log level belongs to ------------------------------------------------------


def test_the_session_connection_is_reached_on_the_installed_sdk() -> None:
    sdk.check_session_connection()
    connection = object()
    probe = SimpleNamespace(protocol_version="2025-11-25")
    session = ServerSession(cast(Any, None), cast(Any, probe))
    assert sdk.connection_of(session) is probe
    assert connection is not probe


class _SessionKeepingItsConnectionElsewhere(ServerSession):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = vars(self).pop("_connection")


def test_without_the_session_connection_the_seam_fails_loudly() -> None:
    with pytest.raises(RuntimeError, match=missing("_SessionKeepingItsConnectionElsewhere._connection")):
        sdk.check_session_connection(_SessionKeepingItsConnectionElsewhere)
    session = _SessionKeepingItsConnectionElsewhere(cast(Any, None), cast(Any, SimpleNamespace(protocol_version="x")))
    with pytest.raises(RuntimeError, match=missing("ServerSession._connection")):
        sdk.connection_of(session)


# --- the SDK's own log set-up, skipped when logging is configured ----------------------------------------


def test_the_sdk_log_set_up_is_skipped_on_the_installed_sdk() -> None:
    import mcp.server.mcpserver.server as sdk_server

    sdk.check_logging_setup()
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    try:
        original = vars(sdk_server)["configure_logging"]
        with sdk.sdk_logging_setup_skipped():
            assert vars(sdk_server)["configure_logging"] is not original
        assert vars(sdk_server)["configure_logging"] is original
    finally:
        root.removeHandler(handler)


def test_without_the_sdk_log_set_up_the_seam_fails_loudly() -> None:
    with pytest.raises(RuntimeError, match=missing("stand_in.configure_logging")):
        sdk.check_logging_setup(ModuleType("stand_in"))


# --- elicitation rounds: our middleware where requestState is still sealed --------------------------------


def test_the_round_memory_sits_before_the_request_state_boundary_on_the_installed_sdk() -> None:
    server = build_server(SETTINGS)  # the build runs the check; once more here, explicitly
    ours = next(m for m in server.middleware if isinstance(m, RoundMemory))
    sdk.check_round_position(server.middleware, RoundMemory, ours.codec, seen_round=sealed_round)


def test_a_round_memory_after_the_boundary_fails_the_start_up_check() -> None:
    server = build_server(SETTINGS)
    chain = list(server.middleware)
    ours = next(m for m in chain if isinstance(m, RoundMemory))
    chain.remove(ours)
    chain.append(ours)  # where unsealing has already happened: replay protection would be off
    with pytest.raises(RuntimeError, match=missing("RequestStateBoundary where this server expects it")):
        sdk.check_round_position(chain, RoundMemory, ours.codec, seen_round=sealed_round)


def test_a_chain_without_the_boundary_fails_loudly() -> None:
    security = RequestStateSecurity.ephemeral()
    with pytest.raises(RuntimeError, match=missing("RequestStateBoundary in the middleware chain")):
        sdk.install_before_request_state_boundary(cast(Any, SimpleNamespace(middleware=[])), RoundMemory(security))
    with pytest.raises(RuntimeError, match=missing("RequestStateBoundary where this server expects it")):
        sdk.check_round_position([RoundMemory(security)], RoundMemory, security.codec, seen_round=sealed_round)


class _EnvelopeWithoutExpiry:
    """A codec whose unsealed envelope carries no `exp`: the shape the seam reads has moved."""

    def __init__(self, codec: RequestStateCodec) -> None:
        self._codec = codec

    def seal(self, payload: bytes) -> str:
        return self._codec.seal(payload)

    def unseal(self, token: str) -> bytes:
        claims = json.loads(self._codec.unseal(token))
        claims.pop("exp", None)
        return json.dumps(claims).encode()


def test_an_envelope_without_an_expiry_fails_the_start_up_check() -> None:
    server = build_server(SETTINGS)
    codec = next(m for m in server.middleware if isinstance(m, RoundMemory)).codec
    assert sdk.sealed_expiry(codec, codec.seal(b'{"exp": 1}')) == 1.0
    assert sdk.sealed_expiry(_EnvelopeWithoutExpiry(codec), codec.seal(b'{"exp": 1}')) is None
    with pytest.raises(RuntimeError, match=missing("a sealed requestState envelope with an `exp`")):
        sdk.check_round_position(server.middleware, RoundMemory, _EnvelopeWithoutExpiry(codec), seen_round=sealed_round)


# --- resumable streams: one event store per session --------------------------------------------------------


def test_session_admission_and_the_transport_event_store_exist_on_the_installed_sdk() -> None:
    sdk.check_session_admission()
    sdk.check_session_event_store()
    sdk.self_check()


class _ManagerWithoutAdmission:
    pass


class _TransportKeepingItsStoreElsewhere(StreamableHTTPServerTransport):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store = vars(self).pop("_event_store")


def test_without_session_admission_the_seam_fails_loudly() -> None:
    with pytest.raises(RuntimeError, match=missing("_ManagerWithoutAdmission._admit_session")):
        sdk.check_session_admission(_ManagerWithoutAdmission)
    assert callable(StreamableHTTPSessionManager._admit_session)


def test_without_the_transport_event_store_the_seam_fails_loudly() -> None:
    with pytest.raises(RuntimeError, match=missing("_TransportKeepingItsStoreElsewhere._event_store")):
        sdk.check_session_event_store(_TransportKeepingItsStoreElsewhere)


# --- a tool's Context: its request context ---------------------------------------------------------------------


class _PropertyRefused(Context[Any, Any]):
    """A Context whose public property fails the test if it is read: the seam must not go through it."""

    @property
    def request_context(self) -> Any:
        raise AssertionError("the seam read the request context through the property")


class _KeptElsewhere(Context[Any, Any]):
    """A Context as a later SDK might keep it: not among the private attributes, but the property answers."""

    def __init__(self, request_context: object) -> None:
        super().__init__()
        self.__pydantic_private__ = {}  # what an SDK that keeps it elsewhere leaves there: nothing of it
        object.__setattr__(self, "_elsewhere", request_context)

    @property
    def request_context(self) -> Any:
        return vars(self)["_elsewhere"]


def test_the_request_context_is_read_without_the_property_on_the_installed_sdk() -> None:
    # The property costs about 5 µs a read (pydantic's __getattr__); a call reads it several times.
    probe = cast(Any, object())
    assert sdk.request_context_of(_PropertyRefused(request_context=probe)) is probe
    assert sdk.request_context_of(Context(request_context=probe)) is Context(request_context=probe).request_context


def test_where_the_sdk_keeps_the_request_context_elsewhere_the_property_answers() -> None:
    probe = object()
    assert sdk.request_context_of(_KeptElsewhere(probe)) is probe


def test_outside_a_request_the_request_context_is_refused_as_the_property_refuses_it() -> None:
    with pytest.raises(ValueError, match="outside of a request"):
        sdk.request_context_of(Context())
    with pytest.raises(ValueError, match="outside of a request"):
        _ = Context().request_context
