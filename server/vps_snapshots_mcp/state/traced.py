"""The consent ledger with a span round each call that spends something (`tracing.py`).

    ledger redeem            a confirmation token or an accepted round spent (`vps_snapshots.ledger.first_use`)
    ledger redeem_approval   a pending approval spent
    ledger spend_change      a change counted against the caller's budget (`vps_snapshots.ledger.counted`)

Each names the backend (`db.system.name`: memory, sqlite, redis) and the operation
(`db.operation.name`); a refusal sets `error.type` (the stable code, or the
refusal's class). Never a key, a token, a principal or an approval id. The other
calls (proposing, deciding, sign-in sessions, readiness) pass through untraced.
"""

from __future__ import annotations

from .. import tracing
from . import ConsentLedger, PendingApproval


class TracedLedger:
    """`ledger`, its spending calls in spans. With no tracer provider configured, the spans are the no-op one."""

    def __init__(self, ledger: ConsentLedger) -> None:
        self.inner = ledger
        name = type(ledger).__name__.removesuffix("Ledger").lower()
        self._system = name if name in ("memory", "sqlite", "redis") else "other"

    @property
    def description(self) -> str:
        return self.inner.description

    async def redeem(self, key: str, *, expires_at: float, issued_at: float | None = None) -> bool:
        with tracing.span("ledger redeem") as span:
            if span.is_recording():
                self._name(span, "redeem")
            first = await self.inner.redeem(key, expires_at=expires_at, issued_at=issued_at)
            if span.is_recording():
                span.set_attribute("vps_snapshots.ledger.first_use", first)
            return first

    async def propose(
        self, plan_digest: str, *, expires_at: float, plan: str = "", requester: str = "", protected: bool = False
    ) -> str:
        return await self.inner.propose(
            plan_digest, expires_at=expires_at, plan=plan, requester=requester, protected=protected
        )

    async def approval(self, approval_id: str) -> PendingApproval | None:
        return await self.inner.approval(approval_id)

    async def pending_approvals(self) -> list[PendingApproval]:
        return await self.inner.pending_approvals()

    async def approve(self, approval_id: str, *, by: str) -> None:
        await self.inner.approve(approval_id, by=by)

    async def decline(self, approval_id: str, *, by: str) -> None:
        await self.inner.decline(approval_id, by=by)

    async def redeem_approval(self, approval_id: str, *, plan_digest: str) -> str:
        with tracing.span("ledger redeem_approval") as span:
            if span.is_recording():
                self._name(span, "redeem_approval")
            return await self.inner.redeem_approval(approval_id, plan_digest=plan_digest)

    async def spend_change(
        self, principal: str, server_id: int, *, per_hour: int | None, per_server_per_hour: int | None
    ) -> float | None:
        with tracing.span("ledger spend_change") as span:
            if span.is_recording():
                self._name(span, "spend_change")
            later = await self.inner.spend_change(
                principal, server_id, per_hour=per_hour, per_server_per_hour=per_server_per_hour
            )
            if span.is_recording():
                span.set_attribute("vps_snapshots.ledger.counted", later is None)
            return later

    async def open_session(self, key: str, record: str, *, idle_s: float, lifetime_s: float) -> None:
        await self.inner.open_session(key, record, idle_s=idle_s, lifetime_s=lifetime_s)

    async def session(self, key: str) -> str | None:
        return await self.inner.session(key)

    async def end_session(self, key: str) -> bool:
        return await self.inner.end_session(key)

    async def prepare(self) -> None:
        await self.inner.prepare()

    async def unavailable(self) -> str | None:
        return await self.inner.unavailable()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def _name(self, span: tracing.Span, operation: str) -> None:
        span.set_attributes({"db.system.name": self._system, "db.operation.name": operation})


def traced(ledger: ConsentLedger) -> ConsentLedger:
    """`ledger` with its spending calls traced (once: a traced ledger is returned as it is)."""
    return ledger if isinstance(ledger, TracedLedger) else TracedLedger(ledger)


__all__ = ["TracedLedger", "traced"]
