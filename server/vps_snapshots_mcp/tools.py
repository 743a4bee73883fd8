"""The five tools, as typed functions, and the one table they are registered from.

Each tool's docstring is what the model reads: when to use it, what it returns,
what it costs. Consent for restore and delete is settled before the body runs
(`consent.py`); the body matches on the typed `Consent` it is given.

Which tools a server offers follows from each tool's own annotations, checked
as the table is registered (`offered_in`): read-only tools are always there;
`--read-only` leaves out everything else, and `--no-destructive` leaves out the
destructive ones. The instructions (`instructions.py`) describe only what is
offered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer, Resolve
from mcp_types import ToolAnnotations
from pydantic import Field

from .app_context import AppContext, app_of
from .confirm import SNAPSHOTS_PER_SERVER, Action, preview_warning
from .consent import (
    Consent,
    Declined,
    Preview,
    concerning,
    delete_consent,
    quota_full,
    restorable_snapshot,
    restore_consent,
    target_snapshot,
)
from .errors import ProviderTimeoutError, SnapshotFailedError, SnapshotsError, Target
from .models import (
    Cancelled,
    ConfirmationRequired,
    CreateResult,
    DeletedResult,
    DeleteOutcome,
    RestoreOutcome,
    RestoreStartedResult,
    ServerState,
    Snapshot,
    SnapshotList,
)
from .provider_text import quoted
from .settings import Settings
from .waiting import WaitOutcome, format_duration, is_running, wait_for_snapshot

MAX_ID = 2**53 - 1  # the largest integer every JSON client represents exactly
NAME_MAX = 64
DESCRIPTION_MAX = 500
DEFAULT_WAIT_S = 900

SnapshotIdArg = Annotated[int, Field(ge=1, le=MAX_ID)]
ServerIdArg = Annotated[int, Field(ge=1, le=MAX_ID)]
NameArg = Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=r"^[A-Za-z0-9_-]+$")]
DescriptionArg = Annotated[str | None, Field(max_length=DESCRIPTION_MAX)]
ConfirmArg = Annotated[bool, Field(description="false: preview only. true: execute, with the user's consent.")]
WaitArg = bool
WaitTimeoutArg = Annotated[int, Field(ge=10, le=3600)]
SafetySnapshotArg = bool
TokenArg = Annotated[str | None, Field(max_length=1024, description="From the preview, once the user agreed.")]


# --- read ------------------------------------------------------------------------------------------


async def list_snapshots(
    ctx: Context[AppContext, Any],
    server_id: Annotated[int | None, Field(ge=1, le=MAX_ID, description="Omit for all servers.")] = None,
) -> SnapshotList:
    """List VPS snapshots, newest first: all, or one server's. Use it first, to find ids, names,
    statuses (in_progress, completed, failed), sizes and dates. Read-only.
    """
    app = app_of(ctx)
    if server_id is not None:
        app.check_server_allowed(server_id, what="this list")
    snapshots = await app.client.list_snapshots(server_id)
    if app.settings.allowed_servers is not None:
        snapshots = [s for s in snapshots if s.server_id in app.settings.allowed_servers]
    return SnapshotList(count=len(snapshots), snapshots=snapshots)


async def get_snapshot(snapshot_id: SnapshotIdArg, ctx: Context[AppContext, Any]) -> Snapshot:
    """Get one snapshot by id. Use it to follow one being created (completed after 3-10 min) or to check
    one before acting. Read-only.
    """
    return await target_snapshot(snapshot_id, ctx)


# --- create ----------------------------------------------------------------------------------------


async def create_snapshot(
    server_id: ServerIdArg,
    name: NameArg,
    ctx: Context[AppContext, Any],
    description: DescriptionArg = None,
    wait: WaitArg = False,
    wait_timeout_s: WaitTimeoutArg = DEFAULT_WAIT_S,
) -> CreateResult:
    """Snapshot a server's disk, e.g. before an update; destroys nothing. Safe to retry: an existing
    snapshot of that name is returned (already_exists), never duplicated. A server holds 5; when full,
    fails with quota_exceeded naming the oldest. Takes 3-10 min: poll get_snapshot, or wait=true to wait
    with progress (until wait_timeout_s, then timed_out). Advise stopping the server first.
    """
    app = app_of(ctx)
    app.check_server_allowed(server_id, what="this snapshot")
    existing = await app.client.list_snapshots(server_id)
    same_name = [s for s in existing if s.name == name]
    if same_name:
        snapshot = same_name[0]
        created_message = (
            f"A snapshot named {quoted(name)} already exists on server {snapshot.server_label} "
            f"(id {snapshot.id}, {snapshot.status}); nothing new was created."
        )
    else:
        if len(existing) >= SNAPSHOTS_PER_SERVER:
            label = existing[0].server_label if existing else f"server {server_id}"
            raise quota_full(label, existing, why="a new snapshot needs a free slot")
        created = await app.client.create_snapshot(server_id, name, description)
        snapshot = created.snapshot
        created_message = created.message or "Snapshot is being created."
    if not wait or not is_running(snapshot):
        hint = (
            f" Poll get_snapshot with id {snapshot.id} until its status is completed." if is_running(snapshot) else ""
        )
        return CreateResult(snapshot=snapshot, message=created_message + hint, already_exists=bool(same_name))

    with concerning(snapshot):
        outcome = await _wait(app, ctx, snapshot, wait_timeout_s, f"snapshot {snapshot.id}")
    waited = format_duration(outcome.waited_s)
    if outcome.timed_out:
        message = (
            f"{created_message} Still {outcome.snapshot.status} after {waited}; it goes on at the provider. "
            f"Poll get_snapshot with id {snapshot.id}; do not create it again."
        )
    else:
        size = f", {outcome.snapshot.size_mb} MB" if outcome.snapshot.size_mb is not None else ""
        message = f"{created_message} Snapshot {snapshot.id} is {outcome.snapshot.status}{size} after {waited}."
    return CreateResult(
        snapshot=outcome.snapshot, message=message, already_exists=bool(same_name), timed_out=outcome.timed_out
    )


# --- restore and delete ----------------------------------------------------------------------------


async def restore_snapshot(
    snapshot_id: SnapshotIdArg,
    ctx: Context[AppContext, Any],
    snapshot: Annotated[Snapshot, Resolve(restorable_snapshot)],
    consent: Annotated[Consent, Resolve(restore_consent)],
    confirm: ConfirmArg = False,
    confirmation_token: TokenArg = None,
    safety_snapshot: SafetySnapshotArg = False,
) -> RestoreOutcome:
    """DESTRUCTIVE: overwrite ALL current data on the snapshot's server with it; irreversible; 5-15 min.
    1) Call without confirm: nothing changes; you get a warning and a confirmation_token. Show the
    warning to the user and ask. 2) Only if they agree, call again with confirm=true and the token.
    safety_snapshot=true (on both calls): snapshot the current state first, restore only once it
    completed.
    """
    app = app_of(ctx)
    if isinstance(consent, Preview):
        return RestoreOutcome(_preview(app, "restore", snapshot, consent, safety_snapshot=safety_snapshot))
    if isinstance(consent, Declined):
        return RestoreOutcome(_cancelled("restore", snapshot, consent))
    with concerning(snapshot):  # Approved: the consent is spent; execute
        safety = await _take_safety_snapshot(app, ctx, snapshot) if safety_snapshot else None
        try:
            started = await app.client.restore_snapshot(snapshot.id)
        except SnapshotsError as exc:
            if safety is not None:
                exc.target = Target(details={"safety_snapshot_id": safety.id}, **_ids(snapshot))
            raise
    server_ref = started.server
    return RestoreOutcome(
        RestoreStartedResult(
            message=started.message or "Server is being restored from snapshot. This may take 5-15 minutes.",
            snapshot=snapshot,
            server=ServerState(
                id=server_ref.id if server_ref else (snapshot.server_id or 0),
                name=server_ref.name if server_ref else (snapshot.server.name if snapshot.server else None),
                status=(server_ref.status if server_ref else None) or "restoring",
            ),
            safety_snapshot=safety,
        ).for_audit(consent=consent.by)
    )


async def delete_snapshot(
    snapshot_id: SnapshotIdArg,
    ctx: Context[AppContext, Any],
    snapshot: Annotated[Snapshot, Resolve(target_snapshot)],
    consent: Annotated[Consent, Resolve(delete_consent)],
    confirm: ConfirmArg = False,
    confirmation_token: TokenArg = None,
) -> DeleteOutcome:
    """DESTRUCTIVE: delete a snapshot for good. 1) Call without confirm: nothing changes; you get a
    warning and a confirmation_token. Show the warning to the user and ask. 2) Only if they agree, call
    again with confirm=true and the token.
    """
    app = app_of(ctx)
    if isinstance(consent, Preview):
        return DeleteOutcome(_preview(app, "delete", snapshot, consent))
    if isinstance(consent, Declined):
        return DeleteOutcome(_cancelled("delete", snapshot, consent))
    with concerning(snapshot):  # Approved: the consent is spent; execute
        await app.client.delete_snapshot(snapshot.id)
    return DeleteOutcome(
        DeletedResult(
            snapshot_id=snapshot.id,
            message=f"Snapshot {snapshot.id} of server {snapshot.server_label} was deleted permanently.",
        ).for_audit(consent=consent.by, target=snapshot)
    )


def _ids(snapshot: Snapshot) -> dict[str, Any]:
    return {"server_id": snapshot.server_id, "snapshot_id": snapshot.id, "snapshot_name": snapshot.name}


def _preview(
    app: AppContext, action: Action, snapshot: Snapshot, consent: Preview, *, safety_snapshot: bool = False
) -> ConfirmationRequired:
    issued = app.tokens.mint(action, snapshot, safety_snapshot=safety_snapshot)
    return ConfirmationRequired(
        action=action,
        snapshot=snapshot,
        warning=preview_warning(
            action, snapshot, safety_snapshot=safety_snapshot, user_will_be_asked=consent.user_will_be_asked
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

    outcome = await wait_for_snapshot(app.client, snapshot, timeout_s=timeout_s, timing=app.timing, report=report)
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
        "Restore a server from a snapshot",
        _annotations(read_only=False, destructive=True, idempotent=False),
    ),
    ToolSpec(delete_snapshot, "Delete a snapshot", _annotations(read_only=False, destructive=True, idempotent=True)),
)
"""Every tool, in the order tools/list shows them."""


def offered_in(settings: Settings, spec: ToolSpec) -> bool:
    """Whether the access mode offers this tool, from its annotations alone."""
    if spec.annotations.read_only_hint:
        return True
    if settings.read_only:
        return False
    return settings.destructive_tools_enabled or not spec.annotations.destructive_hint


def offered_tools(settings: Settings) -> tuple[ToolSpec, ...]:
    """The tools this access mode offers, in table order."""
    return tuple(spec for spec in TOOLS if offered_in(settings, spec))


def register_tools(server: MCPServer[AppContext], specs: tuple[ToolSpec, ...]) -> None:
    for spec in specs:
        server.add_tool(spec.fn, title=spec.title, annotations=spec.annotations)


__all__ = ["TOOLS", "ToolSpec", "offered_in", "offered_tools", "register_tools"]
