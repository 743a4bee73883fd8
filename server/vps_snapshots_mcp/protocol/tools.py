"""The five tools, as typed functions, and the one table they are registered from.

Each tool's docstring is what the model reads: when to use it, what it returns,
what it costs. Consent for restore and delete is settled before the body runs
(`consent.py`); the body matches on the typed `Consent` it is given.

What tools/list shows is generated from this table into `tools.json`
(`published.py`), which also decides, from each tool's annotations, what an
access mode offers. The server loads this module at the first tool call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server.mcpserver import Context, MCPServer, Resolve
from mcp_types import ToolAnnotations
from pydantic import Field, StrictBool, StrictInt, StrictStr

from .. import audit
from ..access import EVERYONE
from ..consent.tokens import Action, preview_warning
from ..errors import ProviderTimeoutError, SnapshotFailedError, SnapshotsError, Target
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
from ..provider.facts import SNAPSHOTS_PER_SERVER
from ..provider.text import plain_or_quoted, quoted, server_label
from ..waiting import WaitOutcome, format_duration, is_running
from .app_context import AppContext, app_of
from .consent import (
    Consent,
    Declined,
    Preview,
    concerning,
    delete_consent,
    look_up,
    quota_full,
    restorable_snapshot,
    restore_consent,
    target_snapshot,
)
from .schemas import MAX_ID, MAX_WAIT_S

PreviewT = TypeVar("PreviewT", RestorePreview, DeletePreview)

NAME_MAX = 64
DESCRIPTION_MAX = 500
DEFAULT_WAIT_S = 900

LIST_DEFAULT = 100
LIST_MAX = 500

# Arguments are taken strictly, as their published schemas say: an integer is a JSON integer (not "12345",
# 12345.0 or true), a boolean is a JSON boolean (not "yes" or 1). Anything else is invalid_argument.
SnapshotIdArg = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
ServerIdArg = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
NameArg = Annotated[StrictStr, Field(min_length=1, max_length=NAME_MAX, pattern=r"^[A-Za-z0-9_-]+$")]
DescriptionArg = Annotated[StrictStr | None, Field(max_length=DESCRIPTION_MAX)]
ConfirmArg = StrictBool  # what confirm=true needs is said once, in the tool's description
WaitArg = StrictBool
WaitTimeoutArg = Annotated[StrictInt, Field(ge=10, le=MAX_WAIT_S)]
SafetySnapshotArg = StrictBool
TokenArg = Annotated[StrictStr | None, Field(max_length=1024)]
LimitArg = Annotated[StrictInt, Field(ge=1, le=LIST_MAX)]


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
    snapshots = app.access.visible(snapshots, lambda s: s.server_id, EVERYONE)
    snapshots.sort(key=lambda s: (s.created_at or "", s.id), reverse=True)
    listed = snapshots[:limit]
    return SnapshotList(
        count=len(listed), total=len(snapshots), truncated=len(listed) < len(snapshots), snapshots=listed
    )


async def get_snapshot(snapshot_id: SnapshotIdArg, ctx: Context[AppContext, Any]) -> Snapshot:
    """One snapshot by id: to follow one being created (done in 3-10 min), or to check one before
    acting on it. Read-only.
    """
    return await look_up(app_of(ctx), snapshot_id, fresh=False)


# --- create ----------------------------------------------------------------------------------------


async def create_snapshot(
    server_id: ServerIdArg,
    name: NameArg,
    ctx: Context[AppContext, Any],
    description: DescriptionArg = None,
    wait: WaitArg = False,
    wait_timeout_s: WaitTimeoutArg = DEFAULT_WAIT_S,
) -> CreateResult:
    """Snapshot a server's disk, e.g. before an update; destroys nothing. Retry-safe: a same-name
    snapshot is returned (already_exists). 5 per server; if full, quota_exceeded names the oldest.
    Takes 3-10 min: poll get_snapshot or wait=true. Advise stopping the server first.
    """
    audit.note(server_id=server_id, snapshot_name=name)
    app = app_of(ctx)
    app.check_server_allowed(server_id, what="this snapshot")
    # Concurrent creates of one name on one server share one find-or-create: one POST at most, and only
    # the call that made it says it was created.
    (snapshot, found), shared = await app.creates.run_telling(
        (server_id, name), lambda: _find_or_create(app, server_id, name, description)
    )
    already_exists = found or shared
    outcome = None
    if wait and is_running(snapshot):
        with concerning(snapshot):
            outcome = await _wait(app, ctx, snapshot, wait_timeout_s, f"snapshot {snapshot.id}")
    final = outcome.snapshot if outcome is not None else snapshot
    timed_out = outcome is not None and outcome.timed_out
    return CreateResult(
        snapshot=final,
        message=create_message(
            final,
            server_id,
            already_exists=already_exists,
            waited_s=outcome.waited_s if outcome else None,
            timed_out=timed_out,
        ),
        already_exists=already_exists,
        timed_out=timed_out,
    )


async def _find_or_create(app: AppContext, server_id: int, name: str, description: str | None) -> tuple[Snapshot, bool]:
    """The snapshot of that name on the server (and True), or a new one (and False)."""
    existing = await app.client.list_snapshots(server_id)
    for snapshot in existing:
        if snapshot.name == name:
            return snapshot, True
    if len(existing) >= SNAPSHOTS_PER_SERVER:
        label = server_label(server_id, existing[0].server_name if existing else None)
        raise quota_full(label, existing, why="a new snapshot needs a free slot")
    # Once the POST leaves, it may land whatever this caller does: its answer is awaited even if the caller is
    # cancelled, so the callers waiting on this find-or-create share it instead of POSTing a second snapshot.
    # Bounded by the client's timeouts (a POST is never retried). Cancellation lands at the next checkpoint,
    # after the single flight has the answer.
    with anyio.CancelScope(shield=True):
        created = await app.client.create_snapshot(server_id, name, description)
    return created.snapshot, False


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
            f"{what} and is {status}; snapshots take 3-10 minutes, so poll get_snapshot with id {snapshot.id} "
            "until it is completed."
        )
    size = f" ({snapshot.size_mb} MB)" if snapshot.size_mb is not None else ""
    return f"{what} and is {status}{size}{waited}."


# --- restore and delete ----------------------------------------------------------------------------


async def _noted_target(snapshot: Annotated[Snapshot, Resolve(target_snapshot)]) -> Snapshot:
    """The target of a restore or delete (consent.py), noted for the audit trail as soon as the look-up
    knows it: a call cancelled later (while the user is asked, or in flight) is recorded with it."""
    audit.note(**_ids(snapshot))
    return snapshot


async def _restore_target(
    noted: Annotated[Snapshot, Resolve(_noted_target)],
    snapshot: Annotated[Snapshot, Resolve(restorable_snapshot)],
) -> Snapshot:
    """The target of a restore, noted first, then checked as restorable."""
    return snapshot


async def restore_snapshot(
    snapshot_id: SnapshotIdArg,
    ctx: Context[AppContext, Any],
    snapshot: Annotated[Snapshot, Resolve(_restore_target)],
    consent: Annotated[Consent, Resolve(restore_consent)],
    confirm: ConfirmArg = False,
    confirmation_token: TokenArg = None,
    safety_snapshot: SafetySnapshotArg = False,
) -> RestoreOutcome:
    """DESTRUCTIVE: overwrites ALL data on the snapshot's server, irreversibly (5-15 min). 1) Without
    confirm: changes nothing, returns a warning and confirmation_token; show the user the warning and
    ask. 2) Only if they agree, call again with confirm=true and the token. safety_snapshot=true (both
    calls) snapshots the server first.
    """
    app = app_of(ctx)
    if isinstance(consent, Preview):
        return RestoreOutcome(_preview(app, RestorePreview, snapshot, consent, safety_snapshot=safety_snapshot))
    if isinstance(consent, Declined):
        return RestoreOutcome(_cancelled("restore", snapshot, consent))
    audit.note(consent=consent.by)
    with concerning(snapshot):  # Approved: the consent is spent; execute
        safety = await _take_safety_snapshot(app, ctx, snapshot) if safety_snapshot else None
        try:
            started = await app.client.restore_snapshot(snapshot.id)
        except SnapshotsError as exc:
            if safety is not None:
                exc.target = Target(details={"safety_snapshot_id": safety.id}, **_ids(snapshot))
            raise
    server_ref = started.server
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
                f"{quoted(snapshot.name)}; this takes 5-15 minutes, and the server is down meanwhile.{safety_note}"
            ),
            snapshot=snapshot,
            server=server,
            safety_snapshot=safety,
        ).for_audit(consent=consent.by)
    )


async def delete_snapshot(
    snapshot_id: SnapshotIdArg,
    ctx: Context[AppContext, Any],
    snapshot: Annotated[Snapshot, Resolve(_noted_target)],
    consent: Annotated[Consent, Resolve(delete_consent)],
    confirm: ConfirmArg = False,
    confirmation_token: TokenArg = None,
) -> DeleteOutcome:
    """DESTRUCTIVE: delete a snapshot for good. 1) Without confirm: changes nothing, returns a
    warning and confirmation_token; show the user the warning and ask. 2) Only if they agree, call
    again with confirm=true and the token.
    """
    app = app_of(ctx)
    if isinstance(consent, Preview):
        return DeleteOutcome(_preview(app, DeletePreview, snapshot, consent))
    if isinstance(consent, Declined):
        return DeleteOutcome(_cancelled("delete", snapshot, consent))
    audit.note(consent=consent.by)
    with concerning(snapshot):  # Approved: the consent is spent; execute
        await app.client.delete_snapshot(snapshot.id)
    return DeleteOutcome(
        DeletedResult(
            snapshot_id=snapshot.id,
            message=f"Snapshot {snapshot.id} of server {server_label(snapshot.server_id, snapshot.server_name)} was "
            "deleted permanently.",
        ).for_audit(consent=consent.by, target=snapshot)
    )


def _ids(snapshot: Snapshot) -> dict[str, Any]:
    return {"server_id": snapshot.server_id, "snapshot_id": snapshot.id, "snapshot_name": snapshot.name}


def _preview(
    app: AppContext, kind: type[PreviewT], snapshot: Snapshot, consent: Preview, *, safety_snapshot: bool = False
) -> PreviewT:
    action: Action = kind.model_fields["action"].default
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
    ).for_audit(target=snapshot)


# --- waiting ---------------------------------------------------------------------------------------


async def _wait(
    app: AppContext, ctx: Context[AppContext, Any], snapshot: Snapshot, timeout_s: float, what: str
) -> WaitOutcome:
    async def report(progress: float, total: float | None, message: str) -> None:
        await ctx.report_progress(progress, total, f"{what}: {message}")  # a no-op without a progress token

    outcome = await app.watches.wait(snapshot, timeout_s=timeout_s, report=report)
    if outcome.snapshot.status == "failed":
        raise SnapshotFailedError(
            f"snapshot {snapshot.id} {quoted(snapshot.name)} ended in status failed after "
            f"{format_duration(outcome.waited_s)}. Delete it (it takes a slot) and try again, perhaps with the "
            "server stopped."
        )
    return outcome


async def _take_safety_snapshot(app: AppContext, ctx: Context[AppContext, Any], target: Snapshot) -> Snapshot:
    """Snapshot the server's current state and wait for it; raise (nothing restored) unless it completes."""
    assert target.server_id is not None
    name = f"pre-restore-{target.id}-{app.timing.now():%Y%m%dT%H%M%SZ}"
    try:
        created = await app.client.create_snapshot(
            target.server_id, name, f"Safety snapshot taken before restoring snapshot {target.id}"
        )
    except SnapshotsError as exc:
        exc.message = f"the safety snapshot could not be started: {exc.message} Nothing was restored."
        raise
    safety = created.snapshot
    try:
        outcome = await _wait(app, ctx, safety, DEFAULT_WAIT_S, f"safety snapshot {safety.id}")
        if outcome.timed_out:
            raise ProviderTimeoutError(
                f"the safety snapshot {safety.id} is still {outcome.snapshot.status} after "
                f"{format_duration(outcome.waited_s)}. Nothing was restored. When get_snapshot shows it completed, "
                "preview the restore again."
            )
    except SnapshotsError as exc:
        exc.target = Target(details={"safety_snapshot_id": safety.id}, **_ids(target))
        raise
    return outcome.snapshot


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
