"""The protocol adapter: SnapshotsServer, and how results and errors are shaped (`compose.py` builds it).

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

The tools and prompts are kept in this server's own registries (`tools`,
`prompts`); the SDK's private parts it needs go through the SDK seam (`sdk.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import pydantic_core
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts import Prompt
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolResult,
    GetPromptResult,
    Icon,
    InputRequiredResult,
    TextContent,
    ToolAnnotations,
)
from mcp_types import Prompt as MCPPrompt
from mcp_types import Tool as MCPTool
from pydantic import BaseModel, ValidationError

from ..access import EVERYONE, AccessPolicy, Action, permits
from ..audit import Actor, Attempt, AuditLog, plain_request_id, trace_id_of
from ..errors import ForbiddenError, InvalidArgumentError, SnapshotsError, StateUnavailableError, UnknownToolError
from ..logs import bound_fields
from ..provider.text import escape_unsafe, quoted
from . import sdk
from .app_context import AppContext
from .principal import current_principal
from .prompts import argument_problems, register_prompts
from .schemas import MAX_ID

logger = logging.getLogger(__name__)

SERVER_NAME = "vps-snapshots"


class SnapshotsServer(MCPServer[AppContext]):
    """An MCPServer whose tool errors always start with a stable code, and whose changes are audited."""

    _tools_loaded = False
    _prompts_loaded = False
    audit_log: AuditLog | None = None

    def __init__(self, *args: Any, published: list[dict[str, Any]], access: AccessPolicy, **kwargs: Any) -> None:
        with sdk.sdk_logging_setup_skipped():
            super().__init__(*args, **kwargs)
        self.access = access
        self._published = [MCPTool.model_validate(tool) for tool in published]
        self._offered: dict[frozenset[Action], list[MCPTool]] = {}
        self._argument_names = {
            tool.name: frozenset(tool.input_schema.get("properties", {})) for tool in self._published
        }
        self.tools: dict[str, Tool] = {}
        """The tools registered (at the first call): this server's own registry, not the SDK's."""
        self.prompts: dict[str, Prompt] = {}
        """The prompts registered (at the first prompts request), also handed to the SDK's public add_prompt."""
        # The SDK checks Mcp-Param-* headers (2026-07-28) against a tool's input schema before it dispatches a
        # call: answered from tools.json, without loading the tools.
        schemas = {tool["name"]: tool["inputSchema"] for tool in published}
        self.input_schema: Callable[[str], Mapping[str, Any] | None] = schemas.get
        sdk.answer_input_schema(self, self.input_schema)

    def _load_tools(self) -> None:
        """Register the offered tools with the SDK, once: at the first call rather than at every start."""
        if self._tools_loaded:
            return
        from .tools import TOOLS, register_tools

        offered = {tool.name for tool in self._published}
        register_tools(self, tuple(spec for spec in TOOLS if spec.name in offered))
        self._tools_loaded = True

    def add_tool(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: ToolAnnotations | None = None,
        icons: list[Icon] | None = None,
        meta: dict[str, Any] | None = None,
        structured_output: bool | None = None,
    ) -> None:
        """Register a tool in this server's own registry (calls and tools/list are answered from it and tools.json)."""
        tool = Tool.from_function(
            fn, name=name, title=title, description=description, annotations=annotations, icons=icons, meta=meta,
            structured_output=structured_output,
        )  # fmt: skip
        self.tools.setdefault(tool.name, tool)

    def add_prompt(self, prompt: Prompt) -> None:
        """Register a prompt with the SDK (which renders it) and in this server's own registry (which looks it up)."""
        self.prompts.setdefault(prompt.name, prompt)
        super().add_prompt(prompt)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[AppContext, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        caller = current_principal()
        audited = self.audit_log is not None and self.access.audits(name, EVERYONE)
        attempt = Attempt(
            tool=name,
            server_id=_plain_id(arguments.get("server_id")),
            snapshot_id=_plain_id(arguments.get("snapshot_id")),
            actor=Actor.of(caller),
        )
        context = context or Context(mcp_server=self)
        try:
            request: ServerRequestContext[AppContext, Any] | None = sdk.request_context_of(context)
        except ValueError:  # a call from outside a request: nobody can read its audit event
            request = None
        attempts: dict[int, Attempt] = {}
        if request is not None:
            # The call's JSON-RPC request id and, when its `_meta` carries a valid `traceparent`, its W3C trace id.
            attempt.request_id, attempt.trace_id = plain_request_id(request.request_id), trace_id_of(request.meta)
            # The call's audit event travels with its Context, which the SDK hands to the tool and its resolvers:
            # the tool and its operation fill it in (`attempt_of`); this adapter writes it when the call ends.
            attempts = request.lifespan_context.attempts
        attempts[id(context)] = attempt
        with bound_fields(request_id=attempt.request_id, trace_id=attempt.trace_id):  # on the call's log lines
            try:
                # Over HTTP a call without its scope never gets here (auth.ScopeGate answers 403); on stdio,
                # forbidden.
                self.access.check_call(name, caller)
                typed = await self._run_tool(name, arguments, context)
            except SnapshotsError as exc:
                attempt.from_error(exc)
                if isinstance(exc, StateUnavailableError):  # the consent ledger failed: the operator's to fix
                    logger.warning("%s refused: %s", name, exc)
                else:
                    logger.info("%s refused or failed: %s", name, exc.code)
                # A call refused for permission is audited whatever the tool: who tried what they may not do.
                await self._audit(audited or isinstance(exc, ForbiddenError), attempt)
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
        # here, from this server's own registry.
        self._load_tools()
        tool = self.tools.get(name)
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
            from .approval import ApprovalRound  # loaded with the tools (a start-up does not load consent)

            if isinstance(cause, ApprovalRound):  # 2026-07-28: send the user to the approval page first
                return cause.result
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
        prompt = self.prompts.get(name)
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
        """The tools the caller may call: one list per set of allowed actions, made once."""
        actions = self.access.allowed_actions(current_principal())
        offered = self._offered.get(actions)
        if offered is None:
            offered = [tool for tool in self._published if permits(actions, tool.name)]
            self._offered[actions] = offered
        return offered

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


__all__ = ["SERVER_NAME", "SnapshotsServer"]
