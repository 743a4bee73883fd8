"""The consent ledger: where every consent that authorises a change is spent, once.

A confirmation token and an accepted elicitation round are each a key with an
expiry. `redeem` records the key atomically and answers whether this was its
first use; a second use, in this process or any other that shares the ledger,
answers False, and the change is refused before the provider is called.

    unset                 MemoryLedger   one process
    sqlite:///ABS/PATH    SqliteLedger   processes on one machine (a stdio server a host restarts)
    redis://HOST:PORT/DB  RedisLedger    replicas (rediss:// for TLS)

A ledger that cannot record (Redis down, the SQLite file unwritable) raises
`StateUnavailableError`: no consent can be spent, so no change runs. Entries
outlive their consent's expiry by `MARGIN_S`, judged on a clock that never steps
back, so neither a clock change nor pruning can make a spent consent usable again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

MARGIN_S = 300.0
"""How long past its consent's expiry an entry is kept."""


class ConsentLedger(Protocol):
    """Records each consent once. Implementations must be safe for concurrent callers."""

    @property
    def shared(self) -> bool:
        """True when other server processes see what this one redeems."""
        ...

    @property
    def description(self) -> str:
        """Where the ledger lives, for logs (never a password)."""
        ...

    async def redeem(self, key: str, *, expires_at: float) -> bool:
        """Record `key` until `expires_at` (epoch seconds); False when it was already recorded."""
        ...

    async def aclose(self) -> None: ...


def open_ledger(url: str | None, *, wall: Callable[[], float]) -> ConsentLedger:
    """The ledger for `url`, checked by `Settings` already; `wall` is a clock that never steps back."""
    if url is None:
        from .memory import MemoryLedger

        return MemoryLedger(wall=wall)
    if urlsplit(url).scheme == "sqlite":
        from .sqlite import SqliteLedger

        return SqliteLedger(urlsplit(url).path, wall=wall)
    from .redis import RedisLedger  # the optional `redis` extra: imported only when asked for

    return RedisLedger(url, wall=wall)


__all__ = ["MARGIN_S", "ConsentLedger", "open_ledger"]
