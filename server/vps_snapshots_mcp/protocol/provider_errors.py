"""The provider's errors in the tools' language: the words that name a tool, a flag or a setting.

The provider speaks only of itself (`provider/failures.py`): a `ProviderError`
carries its facts (status, the provider's own message, the wait it asked for)
and, where the next step means naming a tool, a flag or a setting, an `Advice`
saying which step and where it goes. `word` puts the step into the message, in
the words of this server; `Worded` is the provider port as the tools see it,
every provider error leaving it worded. The flags and variables are read from
the settings' own declarations, so a renamed flag is renamed here too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..errors import AdviceKind, ProviderError
from ..provider.changes import ChangeObserver, unobserved
from ..settings import Settings

if TYPE_CHECKING:
    from ..models import CreatedSnapshot, RestoreStarted, Snapshot
    from ..provider import SnapshotsProvider

LIST_TOOL = "list_snapshots"


def _option(name: str, part: str) -> str:
    """The flag or environment variable of the setting `name`, as the settings declare it."""
    [found] = [f.metadata["option"] for f in dataclasses.fields(Settings) if f.name == name]
    value = getattr(found, part)
    assert isinstance(value, str), (name, part)
    return value


WORDS: dict[AdviceKind, str] = {
    "check_api_token": f"; check {_option('api_token', 'env')}",
    "check_api_url": f"; check {_option('api_url', 'env')}",
    "see_list": f"; call {LIST_TOOL} to see the snapshots there are",
    "see_list_now": f"; call {LIST_TOOL}",
    "check_list": f" Check with {LIST_TOOL} before trying again.",
    "check_list_once": f" Check with {LIST_TOOL} before trying again, so as not to do it twice.",
    "list_shows_statuses": f" ({LIST_TOOL} shows statuses)",
    "find_created": (
        f" Call {LIST_TOOL} for server {{server_id}} to find it; creating it again with the same name returns it "
        "instead of making a duplicate."
    ),
    "list_server": f" Call {LIST_TOOL} for server {{server_id}} before trying again.",
    "max_records": f" ({_option('max_records', 'flag')})",
    "max_response_bytes": f" ({_option('max_response_bytes', 'flag')})",
}
"""Each next step in this server's words; `{server_id}` is the server the advice concerns."""


def word(error: ProviderError) -> ProviderError:
    """The error with its advice worded into its message (once: the advice is then spent)."""
    advice = error.advice
    if advice is not None:
        words = WORDS[advice.kind].format(server_id=advice.server_id)
        error.message = error.message[: advice.at] + words + error.message[advice.at :]
        error.advice = None
    return error


@contextmanager
def worded() -> Iterator[None]:
    """Provider errors escaping this block are worded for the model."""
    try:
        yield
    except ProviderError as exc:
        word(exc)
        raise


class Worded:
    """The provider port as the tools see it: the same calls, every provider error worded (`word`)."""

    def __init__(self, provider: SnapshotsProvider) -> None:
        self._provider = provider

    async def list_snapshots(self, server_id: int | None = None, *, fresh: bool = False) -> list[Snapshot]:
        with worded():
            return await self._provider.list_snapshots(server_id, fresh=fresh)

    async def get_snapshot(self, snapshot_id: int, *, fresh: bool = False) -> Snapshot:
        with worded():
            return await self._provider.get_snapshot(snapshot_id, fresh=fresh)

    async def create_snapshot(
        self, server_id: int, name: str, description: str | None = None, *, observe: ChangeObserver = unobserved
    ) -> CreatedSnapshot:
        with worded():
            return await self._provider.create_snapshot(server_id, name, description, observe=observe)

    async def restore_snapshot(self, snapshot_id: int, *, observe: ChangeObserver = unobserved) -> RestoreStarted:
        with worded():
            return await self._provider.restore_snapshot(snapshot_id, observe=observe)

    async def delete_snapshot(self, snapshot_id: int, *, observe: ChangeObserver = unobserved) -> None:
        with worded():
            await self._provider.delete_snapshot(snapshot_id, observe=observe)

    async def aclose(self) -> None:
        await self._provider.aclose()
