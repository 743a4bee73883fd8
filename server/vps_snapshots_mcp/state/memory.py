"""The in-memory ledger: single use within one process."""

from __future__ import annotations

import threading
from collections.abc import Callable

from . import MARGIN_S


class MemoryLedger:
    def __init__(self, *, wall: Callable[[], float]) -> None:
        self._wall = wall
        self._entries: dict[str, float] = {}  # key -> when it may be forgotten
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        return False

    @property
    def description(self) -> str:
        return "memory (this process only)"

    async def redeem(self, key: str, *, expires_at: float) -> bool:
        now = self._wall()
        with self._lock:
            self._entries = {k: until for k, until in self._entries.items() if until >= now}
            if key in self._entries:
                return False
            self._entries[key] = expires_at + MARGIN_S
            return True

    async def aclose(self) -> None:
        return None
