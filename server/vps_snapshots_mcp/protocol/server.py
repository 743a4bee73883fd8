"""The protocol adapter and the composition root: `build_server(settings)` returns a ready MCP server.

`SnapshotsServer` is where the MCP SDK meets this package:

- every failure reaches the model as a tool error (`isError: true`) whose text
  starts with a stable code (`not_found: ...`): the error tree, the SDK's
  argument validation, unknown tools and unknown arguments alike;
- each call the access policy audits gets an audit event, which travels with
  the call's Context to the tool and its operation (they fill it in) and is
  written when the call ends: done, refused, failed or cancelled;
- tools/list is the published `tools.json` (`published.py`); the tools
  themselves, and the consent machinery they use, load at the first call,
  and the runbook prompts at the first prompts request.

The lifespan owns every resource a call uses (the provider client, the consent
ledger, the audit log) and closes them when the server stops; the provider
client is made at the first call that needs it (`app_context.py`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import anyio
import mcp.server.mcpserver.server as sdk_server
import pydantic_core
from mcp.server.mcpserver import Context, MCPServer, RequestStateSecurity
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.request_state import RequestStateBoundary
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult, GetPromptResult, InputRequiredResult, TextContent
from mcp_types import Prompt as MCPPrompt
from mcp_types import Tool as MCPTool
from pydantic import BaseModel, SecretStr, ValidationError

from .. import __version__
from ..access import EVERYONE, AccessPolicy
from ..audit import Attempt, AuditLog
from ..consent.tokens import TOKEN_TTL_S, ConfirmationTokens
from ..errors import InvalidArgumentError, SnapshotsError, UnknownToolError
from ..provider.text import escape_unsafe, quoted
from ..settings import Settings
from ..state import ConsentLedger, open_ledger
from ..timing import Timing
from . import host_logging as client_logging
from .app_context import AppContext
from .instructions import instructions_for
from .prompts import argument_problems, register_completion, register_prompts
from .published import published_tools
from .rounds import RoundMemory
from .schemas import MAX_ID

if TYPE_CHECKING:
    from ..provider.client import SnapshotsClient, Transport

logger = logging.getLogger(__name__)

SERVER_NAME = "vps-snapshots"


class SnapshotsServer(MCPServer[AppContext]):
    """An MCPServer whose tool errors always start with a stable code, and whose changes are audited."""

    _tools_loaded = False
    _prompts_loaded = False
    audit_log: AuditLog | None = None

    def __init__(self, *args: Any, published: list[dict[str, Any]], access: AccessPolicy, **kwargs: Any) -> None:
        with _sdk_logging_setup_skipped_if_configured():
            super().__init__(*args, **kwargs)
        self.access = access
        self._published = [MCPTool.model_validate(tool) for tool in published]
        self._argument_names = {
            tool.name: frozenset(tool.input_schema.get("properties", {})) for tool in self._published
        }

    def _load_tools(self) -> None:
        """Register the offered tools with the SDK, once: at the first call rather than at every start."""
        if self._tools_loaded:
            return
        from .tools import TOOLS, register_tools

        offered = {tool.name for tool in self._published}
        register_tools(self, tuple(spec for spec in TOOLS if spec.name in offered))
        self._tools_loaded = True

    def _tool_input_schema(self, name: str) -> dict[str, Any] | None:
        # The SDK asks for a tool's schema before it dispatches a call (mcp<3: this private hook).
        self._load_tools()
        return super()._tool_input_schema(name)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[AppContext, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        audited = self.audit_log is not None and self.access.audits(name, EVERYONE)
        attempt = Attempt(
            tool=name,
            server_id=_plain_id(arguments.get("server_id")),
            snapshot_id=_plain_id(arguments.get("snapshot_id")),
        )
        context = context or Context(mcp_server=self)
        # The call's audit event travels with its Context, which the SDK hands to the tool and its resolvers:
        # the tool and its operation fill it in (`attempt_of`); this adapter writes it when the call ends.
        attempts = _attempts_of(context)
        attempts[id(context)] = attempt
        try:
            typed = await self._run_tool(name, arguments, context)
        except SnapshotsError as exc:
            attempt.from_error(exc)
            logger.info("%s refused or failed: %s", name, exc.code)
            await self._audit(audited, attempt)
            return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)
        except anyio.get_cancelled_exc_class():
            await self._audit(audited, attempt.cancelled_by_client())
            raise
        except BaseException:
            await self._audit(audited, attempt)  # a crash: recorded as failed, with no code
            raise
        finally:
            del attempts[id(context)]
        if isinstance(typed, InputRequiredResult):
            return typed  # an elicitation round still open: the attempt is recorded when it ends
        await self._audit(audited, attempt)  # the tool's operation said how it ended
        return _tool_result(typed)

    async def _audit(self, audited: bool, attempt: Attempt) -> None:
        if audited and self.audit_log is not None:
            # Shielded: a call cancelled now (its change done, or just cancelled) is still recorded.
            with anyio.CancelScope(shield=True):
                await self.audit_log.write(attempt)

    async def _run_tool(
        self, name: str, arguments: dict[str, Any], context: Context[AppContext, Any] | None
    ) -> BaseModel | InputRequiredResult:
        """The tool's typed result, before it is turned into content; every failure as a SnapshotsError."""
        # The SDK's own call_tool converts the result at once; the audit needs it typed, so the tool is run
        # here, through the tool manager the SDK registered it with.
        self._load_tools()
        tool = self._tool_manager.get_tool(name)
        if tool is None:
            names = ", ".join(t.name for t in await self.list_tools())
            raise UnknownToolError(
                f"there is no tool {quoted(name[:64])} in this server's access mode; the tools are {names}. "
                "Nothing was changed."
            )
        self._refuse_unknown_arguments(name, arguments)
        context = context or Context(mcp_server=self)
        try:
            result: BaseModel | InputRequiredResult = await tool.run(arguments, context, convert_result=False)
        except ToolError as exc:
            # The SDK wraps what a tool raises as "Error executing tool NAME: ..."; the code must come first.
            cause = exc.__cause__
            if isinstance(cause, SnapshotsError):
                raise cause from None
            if isinstance(cause, ValidationError):
                raise _invalid_arguments(cause) from None
            raise
        return result

    def _load_prompts(self) -> None:
        """Register the runbook prompts with the SDK, once: when a client first asks for prompts, not at start."""
        if not self._prompts_loaded:
            register_prompts(self, self.access, EVERYONE)
            self._prompts_loaded = True

    async def list_prompts(self) -> list[MCPPrompt]:
        self._load_prompts()
        return await super().list_prompts()

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[AppContext, Any] | None = None
    ) -> GetPromptResult | InputRequiredResult:
        # A wrong prompt or argument is the caller's mistake: invalid params (-32602), naming it and the rule,
        # instead of the SDK's "Error rendering prompt" with the reason only in a traceback.
        self._load_prompts()
        prompt = self._prompt_manager.get_prompt(name)
        if prompt is None:
            names = ", ".join(p.name for p in await self.list_prompts()) or "none"
            raise MCPError(
                INVALID_PARAMS, f"invalid_argument: there is no prompt {quoted(name[:64])}; the prompts are {names}."
            )
        problems = argument_problems(prompt.fn, arguments or {})
        if problems:
            raise MCPError(INVALID_PARAMS, f"invalid_argument: prompt {name}: {'; '.join(problems)}.")
        return await super().get_prompt(name, arguments, context)

    async def list_tools(self) -> list[MCPTool]:
        return self._published

    def _refuse_unknown_arguments(self, name: str, arguments: dict[str, Any]) -> None:
        # A misspelt argument (say `confirmation-token`) must not be silently ignored.
        known = self._argument_names.get(name)
        unknown = sorted(set(arguments) - known) if known is not None else []
        if unknown:
            listed = ", ".join(quoted(a[:40]) for a in unknown[:5])  # the caller's text, shown as data
            raise InvalidArgumentError(
                f"{name} has no argument {listed}; it takes {', '.join(sorted(known or ())) or 'none'}. "
                "Fix the arguments and call again; nothing was changed."
            )


@contextmanager
def _sdk_logging_setup_skipped_if_configured() -> Iterator[None]:
    """MCPServer's constructor imports rich for a log handler (15 ms of every start) and hands it to
    logging.basicConfig, which does nothing once the root logger has a handler, as the command line's has.
    Skipped only then, so nothing changes but the start-up time (mcp<3: the constructor calls it by module name).
    """
    if not logging.getLogger().handlers:
        yield
        return
    original = vars(sdk_server)["configure_logging"]
    setattr(sdk_server, "configure_logging", lambda level="INFO": None)  # noqa: B010 - not re-exported
    try:
        yield
    finally:
        setattr(sdk_server, "configure_logging", original)  # noqa: B010


def _provider_client(
    settings: Settings, api_token: SecretStr, transport: Transport | None, timing: Timing
) -> SnapshotsClient:
    """The provider client the settings describe; made at the first call that needs it (see app_context)."""
    from ..provider.client import SERVER_RETRY_POLICY, SnapshotsClient  # with the provider's records: not at start

    return SnapshotsClient(
        base_url=settings.api_url,
        token=api_token,
        timeout_s=settings.timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        transport=transport,
        timing=timing,
        retry=SERVER_RETRY_POLICY,
        max_concurrency=settings.max_concurrency,
        max_response_bytes=settings.max_response_bytes,
        max_records=settings.max_records,
    )


def _tool_result(typed: BaseModel) -> CallToolResult:
    """A tool's typed result as structured content, and the same as compact JSON text for text-only clients.

    Built here rather than by the SDK's converter, which serialises the result twice (indented text, then
    the structured form), validates it again and copies the text to escape it. Compact text costs a model
    fewer tokens than indented text for the same JSON.
    """
    structured = typed.model_dump(mode="json", by_alias=True)
    # The text a model reads is the result as JSON; provider strings in it must not move or hide text.
    text = escape_unsafe(pydantic_core.to_json(structured).decode())
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


def _attempts_of(context: Context[AppContext, Any]) -> dict[int, Attempt]:
    try:
        return context.request_context.lifespan_context.attempts
    except ValueError:  # a call from outside a request: nobody can read its audit event
        return {}


def _plain_id(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID else None


_JSON_TYPES = {"int_type": "integer", "bool_type": "boolean", "string_type": "string"}


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _invalid_arguments(error: ValidationError) -> InvalidArgumentError:
    # Field names, rules and JSON types only: the rejected values are the caller's and may be huge.
    problems = []
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        expected = _JSON_TYPES.get(item["type"])
        if expected is not None:  # strict types: no "12345" for an integer, no "yes" or 1 for a boolean
            problems.append(f"{where} must be a JSON {expected}, not a {_json_type(item.get('input'))}")
        else:
            problems.append(f"{where}: {item['msg']}")
    return InvalidArgumentError("; ".join(problems) + ". Fix the arguments and call again; nothing was changed.")


# --- the composition root -------------------------------------------------------------------------


def build_server(
    settings: Settings,
    transport: Transport | None = None,
    *,
    timing: Timing | None = None,
    ledger: ConsentLedger | None = None,
) -> SnapshotsServer:
    """The MCP server for `settings`, talking to the provider through `transport` (default: the network).

    `timing` is every clock and sleep (tests inject one); `ledger` overrides the one `settings.state_url` names.
    """
    timing = timing or Timing()
    secret = settings.confirm_secret.get_secret_value().encode() if settings.confirm_secret else None
    tokens = ConfirmationTokens(secret, wall=timing.wall)
    assert settings.api_token is not None, "Settings guarantees a token"
    api_token = settings.api_token
    live: list[AppContext] = []  # the running lifespan's context, for handlers that get no request context

    @asynccontextmanager
    async def lifespan(server: MCPServer[AppContext]) -> AsyncIterator[AppContext]:
        consent_ledger = ledger or open_ledger(settings.state_url, wall=timing.wall)
        await consent_ledger.prepare()  # best effort: marks a new ledger's birth, names a Redis that may evict
        audit_log = AuditLog(settings.audit_log, now=timing.now) if settings.audit_log else None
        assert isinstance(server, SnapshotsServer)
        server.audit_log = audit_log
        app = AppContext(
            settings=settings,
            timing=timing,
            tokens=tokens,
            ledger=consent_ledger,
            access=access,
            open_client=lambda: _provider_client(settings, api_token, transport, timing),
        )
        live.append(app)
        try:
            yield app
        finally:
            live.remove(app)
            try:
                if app.client_opened:
                    await app.client.aclose()
            finally:
                server.audit_log = None
                if audit_log is not None:
                    audit_log.close()
                if ledger is None:
                    await consent_ledger.aclose()

    async def list_servers() -> list[tuple[int, str | None]]:
        """Servers seen in the snapshot list (the API has no server list), for argument completion."""
        if not live:
            return []
        try:
            snapshots = await live[-1].client.list_snapshots()
        except SnapshotsError:
            return []  # completion is a convenience; a provider failure just means no suggestions
        seen = {(s.server.id, s.server.name) for s in snapshots if s.server is not None}
        return sorted(access.visible(seen, lambda server: server[0], EVERYONE))

    auth: dict[str, Any] = {}
    if settings.transport == "http" and settings.oauth_enabled:
        from .auth import oauth_for  # PyJWT is needed only for OAuth

        auth["auth"], auth["token_verifier"] = oauth_for(settings)
    access = AccessPolicy.from_settings(settings)
    published = published_tools(access, EVERYONE)
    request_state_security = _request_state_security(secret)
    server = SnapshotsServer(
        SERVER_NAME,
        published=published,
        access=access,
        title="VPS Snapshots",
        version=__version__,
        instructions=instructions_for(access, EVERYONE, frozenset(tool["name"] for tool in published)),
        lifespan=lifespan,
        log_level=settings.log_level,
        request_state_security=request_state_security,
        **auth,
    )
    register_completion(server, list_servers)
    _install_round_memory(server, request_state_security)
    client_logging.install(server, settings.log_level, *settings.secrets())
    return server


def _install_round_memory(server: MCPServer[AppContext], security: RequestStateSecurity) -> None:
    """Put the round-identity middleware just outside the SDK's requestState boundary, where it sees sealed state."""
    chain = server.middleware
    at = next(i for i, m in enumerate(chain) if isinstance(m, RequestStateBoundary))
    chain.insert(at, RoundMemory(security))


def _request_state_security(secret: bytes | None) -> RequestStateSecurity:
    """Elicitation rounds (2026-07-28 request_state) live as long as a token, and survive a change of replica."""
    if secret is None:
        return RequestStateSecurity.ephemeral(ttl=TOKEN_TTL_S)  # a random key per process
    key = hmac.new(secret, b"vps-snapshots-mcp/request-state/v1", hashlib.sha256).digest()
    return RequestStateSecurity(keys=[key], ttl=TOKEN_TTL_S)


__all__ = ["SERVER_NAME", "SnapshotsServer", "build_server"]
