"""The operations: what a snapshot tool asks of the provider, between the tools and the provider client.

    create    find-or-create by name (concurrent identical creates share one
              POST), refused before posting when the server is full
    wait      poll a snapshot until it is done, reporting progress through a port
    restore   the safety snapshot first (when asked for), then the restore's POST, once
    delete    the DELETE, once

Each operation is given the call's audit event (`audit.Attempt`) and the
principal who asked, and fills the event in as it goes: what was asked, what
was sent (it observes its own change crossing the wire), what came back. The
caller (today a tool; later a task runner or an approval page) opens the event
and writes it when the call ends, whatever the operation raised.

Consent is settled before an operation is called: restore and delete execute.
The server fence and the policy are asked again here (`access.py`), so no
caller can skip them; a restore or delete is counted against the caller's
change budget (in the shared ledger) just before it is sent, and refused,
with nothing sent, past it.
No MCP import: progress goes to a plain callable the protocol layer supplies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import anyio

from .access import AccessPolicy, Who
from .consent.wording import quota_full
from .errors import ChangeBudgetError, ProviderTimeoutError, SnapshotFailedError, SnapshotsError, Target
from .models import ConsentKind, RestoreStarted, Snapshot
from .provider.facts import SNAPSHOTS_PER_SERVER
from .provider.single_flight import SingleFlight
from .provider.text import quoted, server_label
from .state import iso_time
from .waiting import Report, WaitOutcome, format_duration, is_running

if TYPE_CHECKING:
    from .audit import Attempt
    from .provider import SnapshotsProvider
    from .state import ConsentLedger
    from .timing import Timing
    from .waiting import SnapshotWatches

DEFAULT_WAIT_S = 900
"""How long a wait lasts unless the caller says otherwise; a safety snapshot is waited for this long."""

Progress = Report
"""The waiting port: `(progress, total, message)`, awaited after every poll; the protocol layer sends it on."""


@dataclass(frozen=True)
class Created:
    """What a create did: the snapshot as it is now, whether it already existed, and the wait, if any."""

    snapshot: Snapshot
    already_exists: bool
    wait: WaitOutcome | None = None


@dataclass(frozen=True)
class Restored:
    """What a restore did: the provider's answer, and the safety snapshot taken first, if any."""

    started: RestoreStarted
    safety: Snapshot | None


class Operations:
    """The four operations over one provider client; lives as long as the server's lifespan."""

    def __init__(
        self,
        client: SnapshotsProvider,
        watches: SnapshotWatches,
        timing: Timing,
        access: AccessPolicy,
        ledger: ConsentLedger | None = None,
    ) -> None:
        self._client = client
        self._watches = watches
        self._timing = timing
        self._access = access
        self._ledger = ledger
        """Where the change budget is counted (none: the budget is not enforced, as without a policy)."""
        self._creates: SingleFlight[tuple[int, str], tuple[Snapshot, bool]] = SingleFlight()
        """Find-or-create of one name on one server, shared by concurrent calls."""

    # --- create ------------------------------------------------------------------------------------

    async def create(
        self,
        event: Attempt,
        principal: Who,
        server_id: int,
        name: str,
        description: str | None,
        *,
        wait_s: float | None = None,
        progress: Progress | None = None,
    ) -> Created:
        """Find or create the snapshot `name` of the server; with `wait_s`, wait for it to finish."""
        event.asked(_key(principal), server_id=server_id, snapshot_name=name)
        self._access.check_server(server_id, principal, what="this snapshot", action="create")
        # Concurrent creates of one name on one server share one find-or-create: one POST at most, and only
        # the call that made it says it was created.
        (snapshot, found), shared = await self._creates.run_telling(
            (server_id, name), lambda: self._find_or_create(event, server_id, name, description)
        )
        outcome = None
        if wait_s is not None and is_running(snapshot):
            with concerning(snapshot):
                outcome = await self.wait(snapshot, wait_s, f"snapshot {snapshot.id}", progress)
        created = Created(outcome.snapshot if outcome is not None else snapshot, found or shared, outcome)
        event.executed(created.snapshot)
        event.details["already_exists"] = created.already_exists
        return created

    async def _find_or_create(
        self, event: Attempt, server_id: int, name: str, description: str | None
    ) -> tuple[Snapshot, bool]:
        """The snapshot of that name on the server (and True), or a new one (and False)."""
        existing = await self._client.list_snapshots(server_id)
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
            created = await self._client.create_snapshot(server_id, name, description, observe=event.own_change)
        return created.snapshot, False

    # --- wait --------------------------------------------------------------------------------------

    async def wait(self, snapshot: Snapshot, timeout_s: float, what: str, progress: Progress | None) -> WaitOutcome:
        """Poll the snapshot until it is done or `timeout_s` passes; a snapshot that failed is an error."""

        async def report(done: float, total: float | None, message: str) -> None:
            if progress is not None:
                await progress(done, total, f"{what}: {message}")

        outcome = await self._watches.wait(snapshot, timeout_s=timeout_s, report=report)
        if outcome.snapshot.status == "failed":
            raise SnapshotFailedError(
                f"snapshot {snapshot.id} {quoted(snapshot.name)} ended in status failed after "
                f"{format_duration(outcome.waited_s)}. Delete it (it takes a slot) and try again, perhaps with the "
                "server stopped."
            )
        return outcome

    # --- restore and delete ------------------------------------------------------------------------

    async def restore(
        self,
        event: Attempt,
        principal: Who,
        snapshot: Snapshot,
        *,
        consent: ConsentKind,
        safety_snapshot: bool,
        progress: Progress | None = None,
    ) -> Restored:
        """Restore the snapshot's server to it (consent given: `token` or `elicitation`); with
        `safety_snapshot`, snapshot the server first and restore only once that snapshot is complete."""
        self._consented(event, principal, snapshot, consent, "restore")
        with concerning(snapshot):
            await self._spend_budget(principal, snapshot)  # the change (and its safety snapshot) is about to be sent
            safety = await self._take_safety_snapshot(event, snapshot, progress) if safety_snapshot else None
            try:
                started = await self._client.restore_snapshot(snapshot.id, observe=event.own_change)
            except SnapshotsError as exc:
                if safety is not None:
                    exc.target = target_of(snapshot, safety_snapshot_id=safety.id)
                raise
        event.executed(snapshot)
        if safety is not None:
            event.details["safety_snapshot_id"] = safety.id
        return Restored(started, safety)

    async def delete(self, event: Attempt, principal: Who, snapshot: Snapshot, *, consent: ConsentKind) -> None:
        """Delete the snapshot for good (consent given: `token` or `elicitation`)."""
        self._consented(event, principal, snapshot, consent, "delete")
        with concerning(snapshot):
            await self._spend_budget(principal, snapshot)
            await self._client.delete_snapshot(snapshot.id, observe=event.own_change)
        event.executed(snapshot)

    def _consented(
        self, event: Attempt, principal: Who, snapshot: Snapshot, consent: ConsentKind, action: Change
    ) -> None:
        event.asked(_key(principal), server_id=snapshot.server_id, snapshot_id=snapshot.id, snapshot_name=snapshot.name)
        event.consent = consent
        with concerning(snapshot):
            self._access.check_server(snapshot.server_id, principal, what=f"snapshot {snapshot.id}", action=action)

    async def _spend_budget(self, principal: Who, snapshot: Snapshot) -> None:
        """Count this change against the caller's budget; past it, `ChangeBudgetError` and nothing is sent."""
        budget = self._access.budget(principal)
        if budget is None or self._ledger is None or snapshot.server_id is None:
            return
        key = _key(principal)
        later = await self._ledger.spend_change(
            key, snapshot.server_id, per_hour=budget.per_hour, per_server_per_hour=budget.per_server_per_hour
        )
        if later is None:
            return
        caps = [f"{budget.per_hour} per hour" if budget.per_hour is not None else ""]
        if budget.per_server_per_hour is not None:
            caps.append(f"{budget.per_server_per_hour} per hour on one server")
        when = (
            "no change is allowed by the policy at all"
            if later == float("inf")
            else f"the next change is possible at {iso_time(later)} (by the consent ledger's clock)"
        )
        raise ChangeBudgetError(
            f"{key} has spent its change budget (restores and deletes: {' and '.join(c for c in caps if c)}); "
            f"{when}. Nothing was sent; the consent given for this change is used up, so preview it again then."
        )

    async def _take_safety_snapshot(self, event: Attempt, target: Snapshot, progress: Progress | None) -> Snapshot:
        """Snapshot the server's current state and wait for it; raise (nothing restored) unless it completes."""
        assert target.server_id is not None
        name = f"pre-restore-{target.id}-{self._timing.now():%Y%m%dT%H%M%SZ}"
        try:
            created = await self._client.create_snapshot(
                target.server_id,
                name,
                f"Safety snapshot taken before restoring snapshot {target.id}",
                observe=event.safety_change,
            )
        except SnapshotsError as exc:
            exc.message = f"the safety snapshot could not be started: {exc.message} Nothing was restored."
            raise
        safety = created.snapshot
        try:
            outcome = await self.wait(safety, DEFAULT_WAIT_S, f"safety snapshot {safety.id}", progress)
            if outcome.timed_out:
                raise ProviderTimeoutError(
                    f"the safety snapshot {safety.id} is still {outcome.snapshot.status} after "
                    f"{format_duration(outcome.waited_s)}. Nothing was restored. When get_snapshot shows it "
                    "completed, preview the restore again."
                )
        except SnapshotsError as exc:
            exc.target = target_of(target, safety_snapshot_id=safety.id)
            raise
        return outcome.snapshot


Change = Literal["restore", "delete"]


def _key(principal: Who) -> str:
    return principal if isinstance(principal, str) else f"{principal.kind}:{principal.id}"


# --- what an error concerns ------------------------------------------------------------------------


def target_of(snapshot: Snapshot, *, safety_snapshot_id: int | None = None) -> Target:
    details = {"safety_snapshot_id": safety_snapshot_id} if safety_snapshot_id is not None else {}
    return Target(server_id=snapshot.server_id, snapshot_id=snapshot.id, snapshot_name=snapshot.name, details=details)


@contextmanager
def concerning(snapshot: Snapshot) -> Iterator[None]:
    """Errors escaping this block say which snapshot they concern (for the audit trail)."""
    try:
        yield
    except SnapshotsError as exc:
        if exc.target is None:
            exc.target = target_of(snapshot)
        raise


__all__ = ["DEFAULT_WAIT_S", "Created", "Operations", "Progress", "Restored", "concerning", "target_of"]
