"""The provider's nouns, parsed tolerantly.

The provider's documentation leaves much open (see upstream-api.md, "Not
documented"), so these models accept what a reasonable provider might send:
unknown fields are ignored, unknown statuses are kept as plain strings, and
`size_mb` may be null. Only `id` is indispensable: a snapshot without one
cannot be acted on.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _ProviderModel(BaseModel):
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
    def server_label(self) -> str:
        """`web-server-01 (12345)`, or just the id when the provider gave no name."""
        if self.server is None:
            return "an unknown server"
        return f"{self.server.name} ({self.server.id})" if self.server.name else f"server {self.server.id}"


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
