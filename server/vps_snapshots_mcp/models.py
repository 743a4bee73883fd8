"""The provider's nouns, parsed tolerantly, and the tools' result models.

The provider's documentation leaves much open (see docs/provider-api.md, "Not
documented"), so these models accept what a reasonable provider might send:
unknown fields are ignored, unknown statuses are kept as plain strings, and
`size_mb` may be null. Only `id` is indispensable: a snapshot without one
cannot be acted on.
"""

# No `from __future__ import annotations` here: pydantic would evaluate every annotation string as each class
# is made, and these classes are made in every server process (at its first tool call).
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from .provider.facts import RESTORE_TAKES

ConsentKind = Literal["token", "elicitation", "approval"]


def _without_titles(schema: dict[str, Any]) -> None:
    """Drop pydantic's generated titles ("Size Mb"): they repeat the names, and tools/list is sent often."""
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)


class _Schema(BaseModel):
    model_config = ConfigDict(json_schema_extra=_without_titles)


class _ProviderModel(_Schema):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ServerRef(_ProviderModel):
    """The server a snapshot belongs to, as the provider names it."""

    id: int = Field(description="The provider's server id.")
    name: str | None = Field(default=None, description="The server's name, when the provider gives one.")


class Snapshot(_ProviderModel):
    """One snapshot, with the provider's fields."""

    id: int = Field(description="The snapshot id; pass it to get/restore/delete.")
    server: ServerRef | None = Field(default=None, description="The server this snapshot belongs to.")
    name: str = Field(default="", description="The snapshot's name.")
    status: str = Field(
        default="unknown",
        description="Provider status: 'in_progress', 'completed', 'failed', or another provider value.",
    )
    size_mb: int | float | None = Field(default=None, description="Size in MB; null while in progress.")
    created_at: str | None = Field(default=None, description="When the snapshot was taken (ISO 8601, UTC).")
    description: str | None = Field(default=None, description="Free text given at creation.")

    @property
    def server_id(self) -> int | None:
        return self.server.id if self.server is not None else None

    @property
    def server_name(self) -> str | None:
        return self.server.name if self.server is not None else None


class CreatedSnapshot(_ProviderModel):
    """The provider's answer to a create: the new snapshot and its message."""

    snapshot: Snapshot
    message: str | None = None


class RestoredServer(_ProviderModel):
    id: int
    name: str | None = None
    status: str | None = None


class RestoredSnapshotRef(_ProviderModel):
    id: int
    name: str | None = None
    created_at: str | None = None


class RestoreStarted(_ProviderModel):
    """The provider's answer to a restore."""

    status: str | None = None
    message: str | None = None
    snapshot: RestoredSnapshotRef | None = None
    server: RestoredServer | None = None


# --- the tools' results ---------------------------------------------------------------------------
# These are the MCP tools' output schemas: what `structuredContent` carries.


class SnapshotList(_Schema):
    """list_snapshots: every snapshot found, newest first."""

    count: int = Field(description="How many snapshots are listed.")
    total: int = Field(description="How many there are; more than count when truncated.")
    truncated: bool = Field(description="True when limit cut the list: ask again with a larger limit or a server_id.")
    snapshots: list[Snapshot]


class CreateResult(_Schema):
    """create_snapshot: the snapshot (new, or the one that already had this name) and what to do next."""

    snapshot: Snapshot
    message: str
    already_exists: bool = Field(
        default=False, description="True when a snapshot with this name existed; nothing new was created."
    )
    timed_out: bool = Field(
        default=False, description="True when wait=true ran out of time; the snapshot goes on at the provider."
    )


class ConfirmationRequired(_Schema):
    """A preview: nothing was done. Show `warning` to the user; execute only with their consent."""

    status: Literal["confirmation_required"] = "confirmation_required"
    action: Literal["restore", "delete"]
    snapshot: Snapshot
    warning: str = Field(description="What would be lost; show it to the user before asking.")
    confirmation_token: str = Field(description="Pass back with confirm=true to execute; single use.")
    expires_at: str = Field(description="When the token stops working (ISO 8601, UTC).")


class RestorePreview(ConfirmationRequired):
    """restore_snapshot's preview: its schema names the one action it can be about."""

    action: Literal["restore"] = "restore"


class DeletePreview(ConfirmationRequired):
    """delete_snapshot's preview."""

    action: Literal["delete"] = "delete"


class Cancelled(_Schema):
    """The user declined or cancelled when asked; nothing was sent to the provider."""

    status: Literal["cancelled"] = "cancelled"
    snapshot_id: int
    message: str


class ServerState(_Schema):
    """The restored server and its status (e.g. 'restoring')."""

    id: int
    name: str | None = None
    status: str | None = None


class RestoreStartedResult(_Schema):
    __doc__ = f"restore_snapshot executed: the provider has started the restore ({RESTORE_TAKES.words})."

    status: Literal["restore_started"] = "restore_started"
    message: str
    snapshot: Snapshot
    server: ServerState
    safety_snapshot: Snapshot | None = Field(
        default=None, description="The snapshot of the pre-restore state, when safety_snapshot was asked for."
    )


class DeletedResult(_Schema):
    """delete_snapshot executed: the snapshot is gone."""

    status: Literal["deleted"] = "deleted"
    snapshot_id: int
    message: str


def _object_without_title(schema: dict[str, Any]) -> None:
    # MCP requires an output schema of type object; a discriminated union is one, whichever member it is.
    schema["type"] = "object"
    schema.pop("title", None)


class RestoreOutcome(RootModel[RestorePreview | RestoreStartedResult | Cancelled]):
    """A preview, a started restore, or a cancellation; `status` tells which."""

    root: Annotated[RestorePreview | RestoreStartedResult | Cancelled, Field(discriminator="status")]
    model_config = ConfigDict(json_schema_extra=_object_without_title)


class DeleteOutcome(RootModel[DeletePreview | DeletedResult | Cancelled]):
    """A preview, a deletion, or a cancellation; `status` tells which."""

    root: Annotated[DeletePreview | DeletedResult | Cancelled, Field(discriminator="status")]
    model_config = ConfigDict(json_schema_extra=_object_without_title)
