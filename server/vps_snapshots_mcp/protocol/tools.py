"""The five tools, as typed functions, and the one table they are registered from.

Each tool's description is what the model reads: when to use it, what it returns,
what it costs. It is the function's docstring, or `_described(...)` where it
quotes the provider's facts (`provider/facts.py`). Consent for restore and delete
is settled before the body runs (`consent.py`); the body matches on the typed
`Consent` it is given.

The bodies are thin: arguments → operation (`operations.py`, which talks to the
provider and fills in the call's audit event) → result model.

What tools/list shows is generated from this table into `tools.json`
(`published.py`); which tools are offered is the access policy's answer
(`access.py`). The server loads this module at the first tool call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer, Resolve
from mcp_types import ToolAnnotations
from pydantic import Field, StrictBool, StrictInt, StrictStr

from ..consent import Action
from ..consent.decision import APPROVAL_TOKEN_PREFIX
from ..consent.wording import approval_preview_warning, preview_warning
from ..models import (
    Cancelled,
    CreateResult,
    DeletedResult,
    DeleteOutcome,
    DeletePreview,
    RestoreOutcome,
    RestorePreview,
    RestoreStartedResult,
    ServerState,
    Snapshot,
    SnapshotList,
)
from ..operations import DEFAULT_WAIT_S, Progress, concerning
from ..provider.facts import (
    DESCRIPTION_MAX,
    NAME_MAX,
    NAME_PATTERN,
    RESTORE_TAKES,
    SNAPSHOT_TAKES,
    SNAPSHOTS_PER_SERVER,
)
from ..provider.text import plain_or_quoted, quoted, server_label
from ..waiting import format_duration, is_running
from .app_context import AppContext, app_of, attempt_of
from .consent import (
    Consent,
    Declined,
    Preview,
    delete_consent,
    look_up,
    restorable_snapshot,
    restore_consent,
    target_snapshot,
)
from .principal import current_principal
from .schemas import MAX_ID, MAX_WAIT_S

PreviewT = TypeVar("PreviewT", RestorePreview, DeletePreview)
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

LIST_DEFAULT = 100
LIST_MAX = 500

# Arguments are taken strictly, as their published schemas say: an integer is a JSON integer (not "12345",
# 12345.0 or true), a boolean is a JSON boolean (not "yes" or 1). Anything else is invalid_argument.
SnapshotIdArg = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
ServerIdArg = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
NameArg = Annotated[StrictStr, Field(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)]
DescriptionArg = Annotated[StrictStr | None, Field(max_length=DESCRIPTION_MAX)]
ConfirmArg = StrictBool  # what confirm=true needs is said once, in the tool's description
WaitArg = StrictBool
WaitTimeoutArg = Annotated[StrictInt, Field(ge=10, le=MAX_WAIT_S)]
SafetySnapshotArg = StrictBool
TokenArg = Annotated[StrictStr | None, Field(max_length=1024)]
LimitArg = Annotated[StrictInt, Field(ge=1, le=LIST_MAX)]


def _described(description: str) -> Callable[[F], F]:
    """A tool's description (what tools/list publishes), built where it quotes the provider's facts."""

    def describe(fn: F) -> F:
        fn.__doc__ = description
        return fn

    return describe


# --- read ------------------------------------------------------------------------------------------


async def list_snapshots(
    ctx: Context[AppContext, Any],
    server_id: Annotated[StrictInt | None, Field(ge=1, le=MAX_ID)] = None,
    limit: LimitArg = LIST_DEFAULT,
) -> SnapshotList:
    """Snapshots, newest first, of all servers or of server_id. Use it first: ids, names, statuses
    (in_progress, completed, failed), sizes, dates. Read-only.
    """
    app = app_of(ctx)
    if server_id is not None:
        app.check_server_allowed(server_id, what="this list")
    snapshots = await app.client.list_snapshots(server_id)
    snapshots = app.access.visible(snapshots, lambda s: s.server_id, current_principal())
    snapshots.sort(key=lambda s: (s.created_at or "", s.id), reverse=True)
    listed = snapshots[:limit]
    return SnapshotList(
        count=len(listed), total=len(snapshots), truncated=len(listed) < len(snapshots), snapshots=listed
    )


@_described(f"""One snapshot by id: to follow one being created (done in {SNAPSHOT_TAKES.text}), or to check one before
    acting on it. Read-only.
    """)
async def get_snapshot(snapshot_id: SnapshotIdArg, ctx: Context[AppContext, Any]) -> Snapshot:
    return await look_up(app_of(ctx), snapshot_id, fresh=False)


# --- create ----------------------------------------------------------------------------------------


@_described(f"""Snapshot a server's disk, e.g. before an update; destroys nothing. Retry-safe: a same-name
    snapshot is returned (already_exists). {SNAPSHOTS_PER_SERVER} per server; if full, quota_exceeded names the oldest.
    Takes {SNAPSHOT_TAKES.text}: poll get_snapshot or wait=true. Advise stopping the server first.
    """)
async def create_snapshot(
    server_id: ServerIdArg,
    name: NameArg,
    ctx: Context[AppContext, Any],
    description: DescriptionArg = None,
    wait: WaitArg = False,
    wait_timeout_s: WaitTimeoutArg = DEFAULT_WAIT_S,
) -> CreateResult:
    app = app_of(ctx)
    created = await app.operations.create(
        attempt_of(ctx),
        current_principal(),
        server_id,
        name,
        description,
        wait_s=wait_timeout_s if wait else None,
        progress=_progress(ctx),
    )
    waited = created.wait
    timed_out = waited is not None and waited.timed_out
    return CreateResult(
        snapshot=created.snapshot,
        message=create_message(
            created.snapshot,
            server_id,
            already_exists=created.already_exists,
            waited_s=waited.waited_s if waited else None,
            timed_out=timed_out,
        ),
        already_exists=created.already_exists,
        timed_out=timed_out,
    )


def create_message(
    snapshot: Snapshot, server_id: int, *, already_exists: bool, waited_s: float | None, timed_out: bool
) -> str:
    """One sentence on the snapshot as it is when the call returns."""
    what = (
        f"Snapshot {snapshot.id} {quoted(snapshot.name)} of server {server_label(server_id, snapshot.server_name)} "
        + ("already exists (nothing new was created)" if already_exists else "was created")
    )
    status = plain_or_quoted(snapshot.status)
    waited = f" after a wait of {format_duration(waited_s)}" if waited_s is not None else ""
    if timed_out:
        return (
            f"{what} and is still {status}{waited}; it goes on at the provider, so poll get_snapshot with id "
            f"{snapshot.id} and do not create it again."
        )
    if is_running(snapshot):
        return (
            f"{what} and is {status}; snapshots take {SNAPSHOT_TAKES.words}, so poll get_snapshot with id "
            f"{snapshot.id} until it is completed."
        )
    size = f" ({snapshot.size_mb} MB)" if snapshot.size_mb is not None else ""
    return f"{what} and is {status}{size}{waited}."


# --- restore and delete ----------------------------------------------------------------------------


async def _noted_target(
    snapshot: Annotated[Snapshot, Resolve(target_snapshot)], ctx: Context[AppContext, Any]
) -> Snapshot:
    """The target of a restore or delete (consent.py), noted for the audit trail as soon as the look-up
    knows it: a call cancelled later (while the user is asked, or in flight) is recorded with it."""
    attempt_of(ctx).concerns(snapshot)
    return snapshot


async def _restore_target(
    noted: Annotated[Snapshot, Resolve(_noted_target)],
    snapshot: Annotated[Snapshot, Resolve(restorable_snapshot)],
    ctx: Context[AppContext, Any],
) -> Snapshot:
    """The target of a restore, noted first, then checked as restorable, and as the caller's to restore: a
    caller the policy does not let restore there is refused before anyone is asked or any token is minted."""
    with concerning(snapshot):
        app_of(ctx).check_server_allowed(snapshot.server_id, what=f"snapshot {snapshot.id}", action="restore")
    return snapshot


async def _delete_target(
    snapshot: Annotated[Snapshot, Resolve(_noted_target)], ctx: Context[AppContext, Any]
) -> Snapshot:
    """The target of a delete, noted, and checked as the caller's to delete (before anyone is asked)."""
    with concerning(snapshot):
        app_of(ctx).check_server_allowed(snapshot.server_id, what=f"snapshot {snapshot.id}", action="delete")
    return snapshot


@_described(f"""DESTRUCTIVE: overwrites ALL data on the snapshot's server, irreversibly ({RESTORE_TAKES.text}). 1) Without
    confirm: changes nothing, returns a warning and confirmation_token; show the user the warning and
    ask. 2) Only if they agree, call again with confirm=true and the token. safety_snapshot=true (both
    calls) snapshots the server first.
    """)  # noqa: E501 - a published description, kept byte for byte
async def restore_snapshot(
    snapshot_id: SnapshotIdArg,
    ctx: Context[AppContext, Any],
    snapshot: Annotated[Snapshot, Resolve(_restore_target)],
    consent: Annotated[Consent, Resolve(restore_consent)],
    confirm: ConfirmArg = False,
    confirmation_token: TokenArg = None,
    safety_snapshot: SafetySnapshotArg = False,
) -> RestoreOutcome:
    app, attempt = app_of(ctx), attempt_of(ctx)
    if isinstance(consent, Preview):
        attempt.previewed(snapshot)
        return RestoreOutcome(_preview(app, RestorePreview, snapshot, consent, safety_snapshot=safety_snapshot))
    if isinstance(consent, Declined):
        attempt.declined(snapshot)
        return RestoreOutcome(_cancelled("restore", snapshot, consent))
    if consent.approver is not None:
        attempt.details["approver"] = consent.approver
    restored = await app.operations.restore(  # Approved: the consent is spent; execute
        attempt,
        current_principal(),
        snapshot,
        consent=consent.by,
        safety_snapshot=safety_snapshot,
        progress=_progress(ctx),
    )
    server_ref, safety = restored.started.server, restored.safety
    server = ServerState(
        id=server_ref.id if server_ref else (snapshot.server_id or 0),
        name=server_ref.name if server_ref else snapshot.server_name,
        status=(server_ref.status if server_ref else None) or "restoring",
    )
    safety_note = f" The safety snapshot {safety.id} holds the state before the restore." if safety else ""
    return RestoreOutcome(
        RestoreStartedResult(
            message=(
                f"Server {server_label(server.id, server.name)} is being restored from snapshot {snapshot.id} "
                f"{quoted(snapshot.name)}; this takes {RESTORE_TAKES.words}, and the server is down meanwhile."
                f"{safety_note}"
            ),
            snapshot=snapshot,
            server=server,
            safety_snapshot=safety,
        )
    )


async def delete_snapshot(
    snapshot_id: SnapshotIdArg,
    ctx: Context[AppContext, Any],
    snapshot: Annotated[Snapshot, Resolve(_delete_target)],
    consent: Annotated[Consent, Resolve(delete_consent)],
    confirm: ConfirmArg = False,
    confirmation_token: TokenArg = None,
) -> DeleteOutcome:
    """DESTRUCTIVE: delete a snapshot for good. 1) Without confirm: changes nothing, returns a
    warning and confirmation_token; show the user the warning and ask. 2) Only if they agree, call
    again with confirm=true and the token.
    """
    app, attempt = app_of(ctx), attempt_of(ctx)
    if isinstance(consent, Preview):
        attempt.previewed(snapshot)
        return DeleteOutcome(_preview(app, DeletePreview, snapshot, consent))
    if isinstance(consent, Declined):
        attempt.declined(snapshot)
        return DeleteOutcome(_cancelled("delete", snapshot, consent))
    # Approved: the consent is spent; execute
    if consent.approver is not None:
        attempt.details["approver"] = consent.approver
    await app.operations.delete(attempt, current_principal(), snapshot, consent=consent.by)
    return DeleteOutcome(
        DeletedResult(
            snapshot_id=snapshot.id,
            message=f"Snapshot {snapshot.id} of server {server_label(snapshot.server_id, snapshot.server_name)} was "
            "deleted permanently.",
        )
    )


def _preview(
    app: AppContext, kind: type[PreviewT], snapshot: Snapshot, consent: Preview, *, safety_snapshot: bool = False
) -> PreviewT:
    action: Action = kind.model_fields["action"].default
    if consent.approval is not None:  # the approval page consents: the token names the approval, the warning links it
        proposed = consent.approval
        return kind(
            snapshot=snapshot,
            warning=approval_preview_warning(
                action, snapshot, proposed.link, int(app.approvals.expiry_s // 60), safety_snapshot=safety_snapshot
            ),
            confirmation_token=APPROVAL_TOKEN_PREFIX + proposed.approval_id,
            expires_at=datetime.fromtimestamp(proposed.expires_at, UTC)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
        )
    issued = app.tokens.mint(
        action,
        snapshot,
        principal=consent.principal,
        safety_snapshot=safety_snapshot,
        user_will_be_asked=consent.user_will_be_asked,
    )
    return kind(
        snapshot=snapshot,
        warning=preview_warning(
            action,
            snapshot,
            safety_snapshot=safety_snapshot,
            user_will_be_asked=consent.user_will_be_asked,
            confirmable=consent.confirmable,
        ),
        confirmation_token=issued.token,
        expires_at=issued.expires_at.isoformat().replace("+00:00", "Z"),
    )


def _cancelled(action: Action, snapshot: Snapshot, consent: Declined) -> Cancelled:
    return Cancelled(
        snapshot_id=snapshot.id,
        message=f"The user {consent.answer} the {action} of snapshot {snapshot.id}. Nothing was sent to the "
        "provider; nothing was changed.",
    )


# --- progress --------------------------------------------------------------------------------------


def _progress(ctx: Context[AppContext, Any]) -> Progress:
    """The operations' waiting port, as MCP progress notifications (a no-op without a progress token)."""
    return ctx.report_progress


# --- the table -------------------------------------------------------------------------------------


def _annotations(*, read_only: bool, destructive: bool, idempotent: bool) -> ToolAnnotations:
    # Every tool reaches the provider: open world.
    return ToolAnnotations(
        read_only_hint=read_only, destructive_hint=destructive, idempotent_hint=idempotent, open_world_hint=True
    )


@dataclass(frozen=True)
class ToolSpec:
    fn: Callable[..., Awaitable[Any]]
    title: str
    annotations: ToolAnnotations

    @property
    def name(self) -> str:
        return self.fn.__name__


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(list_snapshots, "List snapshots", _annotations(read_only=True, destructive=False, idempotent=True)),
    ToolSpec(get_snapshot, "Get a snapshot", _annotations(read_only=True, destructive=False, idempotent=True)),
    ToolSpec(create_snapshot, "Create a snapshot", _annotations(read_only=False, destructive=False, idempotent=False)),
    ToolSpec(
        restore_snapshot,
        "Restore a snapshot",
        _annotations(read_only=False, destructive=True, idempotent=False),
    ),
    ToolSpec(delete_snapshot, "Delete a snapshot", _annotations(read_only=False, destructive=True, idempotent=True)),
)
"""Every tool, in the order tools/list shows them."""


def register_tools(server: MCPServer[AppContext], specs: tuple[ToolSpec, ...]) -> None:
    for spec in specs:
        server.add_tool(spec.fn, title=spec.title, annotations=spec.annotations)


__all__ = ["TOOLS", "ToolSpec", "register_tools"]
