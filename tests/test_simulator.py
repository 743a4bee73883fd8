"""The simulator against the contract, over raw HTTP (not through our client).

These tests speak plain httpx2 to the ASGI app, so the simulator is checked on
its own: a bug shared with the client's parsing could not hide here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest

from vps_snapshots_mcp.simulator import Fault, ManualClock, ProviderState, create_app

from .support.world import TOKEN

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@pytest.fixture
async def http(provider: ProviderState) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=create_app(provider, token=TOKEN))
    async with httpx2.AsyncClient(transport=transport, base_url="https://sim.test/api/v1", headers=AUTH) as c:
        yield c


async def test_the_documented_example_is_seeded_exactly(http: httpx2.AsyncClient) -> None:
    response = await http.get("/snapshots/", params={"server_id": 12345})
    assert response.status_code == 200
    assert response.json() == {
        "count": 2,
        "results": [
            {"id": 801, "server": {"id": 12345, "name": "web-server-01"}, "name": "pre-migration-snapshot",
             "status": "completed", "size_mb": 5120, "created_at": "2025-01-15T18:30:00Z",
             "description": "Before major migration"},
            {"id": 798, "server": {"id": 12345, "name": "web-server-01"},
             "name": "weekly-snapshot-2025-01-08", "status": "completed", "size_mb": 4856,
             "created_at": "2025-01-08T12:00:00Z", "description": "Weekly snapshot"},
        ],
    }  # fmt: skip


async def test_at_least_three_servers_are_seeded(provider: ProviderState) -> None:
    assert len(provider.servers) >= 3


async def test_create_answers_201_in_progress_then_completes_on_the_clock(
    http: httpx2.AsyncClient, clock: ManualClock
) -> None:
    response = await http.post("/snapshots/", json={"server_id": 12345, "name": "before-update-snapshot"})
    assert response.status_code == 201
    body = response.json()
    assert body["id"] == 802
    assert (body["status"], body["size_mb"], body["created_at"]) == (
        "in_progress",
        None,
        "2026-11-27T12:00:00Z",
    )
    assert body["message"].startswith("Snapshot is being created.")

    clock.advance(239)
    [snap] = [s for s in (await http.get("/snapshots/")).json()["results"] if s["id"] == 802]
    assert snap["status"] == "in_progress"
    clock.advance(1)
    [snap] = [s for s in (await http.get("/snapshots/")).json()["results"] if s["id"] == 802]
    assert (snap["status"], snap["size_mb"]) == ("completed", 5120)


async def test_a_snapshot_can_be_made_to_fail(http: httpx2.AsyncClient, provider: ProviderState) -> None:
    provider.fail_next_snapshots = 1
    created = (await http.post("/snapshots/", json={"server_id": 12345, "name": "doomed"})).json()
    assert isinstance(provider.clock, ManualClock)
    provider.clock.advance(600)
    [snap] = [s for s in (await http.get("/snapshots/")).json()["results"] if s["id"] == created["id"]]
    assert snap["status"] == "failed"


async def test_the_sixth_snapshot_is_refused_with_the_limit_message(http: httpx2.AsyncClient) -> None:
    for i in range(3):
        assert (await http.post("/snapshots/", json={"server_id": 12345, "name": f"s{i}"})).status_code == 201
    response = await http.post("/snapshots/", json={"server_id": 12345, "name": "s6"})
    assert response.status_code == 400
    assert "snapshot limit reached" in response.json()["detail"].lower()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"server_id": 12345, "name": "has space"}, "name"),
        ({"server_id": 12345, "name": "x" * 101}, "name"),
        ({"server_id": 12345}, "name"),
        ({"name": "ok"}, "server_id"),
        ({"server_id": "12345", "name": "ok"}, "server_id"),
        ({"server_id": 12345, "name": "ok", "description": 5}, "description"),
    ],
)
async def test_invalid_parameters_are_400_with_field_errors(
    http: httpx2.AsyncClient, payload: dict[str, object], field: str
) -> None:
    response = await http.post("/snapshots/", json=payload)
    assert response.status_code == 400
    assert field in response.json()


async def test_create_on_an_unknown_server_is_404(http: httpx2.AsyncClient) -> None:
    response = await http.post("/snapshots/", json={"server_id": 1, "name": "x"})
    assert response.status_code == 404


async def test_restore_marks_the_server_restoring_until_the_delay_passes(
    http: httpx2.AsyncClient, provider: ProviderState, clock: ManualClock
) -> None:
    response = await http.post("/snapshots/801/restore/")
    assert response.status_code == 200
    assert response.json() == {
        "status": "success",
        "message": "Server is being restored from snapshot. This may take 5-15 minutes.",
        "snapshot": {"id": 801, "name": "pre-migration-snapshot", "created_at": "2025-01-15T18:30:00Z"},
        "server": {"id": 12345, "name": "web-server-01", "status": "restoring"},
    }
    again = await http.post("/snapshots/798/restore/")
    assert again.status_code == 400
    assert "not in a valid state for restoration" in again.json()["detail"]
    snap = await http.post("/snapshots/", json={"server_id": 12345, "name": "during"})
    assert snap.status_code == 400

    clock.advance(600)
    assert (await http.post("/snapshots/798/restore/")).status_code == 200
    assert provider.servers[12345].status == "restoring"


async def test_restore_of_an_unfinished_snapshot_is_400(http: httpx2.AsyncClient) -> None:
    created = (await http.post("/snapshots/", json={"server_id": 12345, "name": "fresh"})).json()
    response = await http.post(f"/snapshots/{created['id']}/restore/")
    assert response.status_code == 400
    assert "not completed" in response.json()["detail"]


async def test_delete_answers_204_with_no_body_then_404(http: httpx2.AsyncClient) -> None:
    first = await http.delete("/snapshots/798/")
    assert (first.status_code, first.content) == (204, b"")
    assert (await http.delete("/snapshots/798/")).status_code == 404
    assert (await http.post("/snapshots/798/restore/")).status_code == 404


async def test_a_missing_or_wrong_token_is_401(provider: ProviderState) -> None:
    transport = httpx2.ASGITransport(app=create_app(provider, token=TOKEN))
    async with httpx2.AsyncClient(transport=transport, base_url="https://sim.test/api/v1") as anonymous:
        missing = await anonymous.get("/snapshots/")
        wrong = await anonymous.get("/snapshots/", headers={"Authorization": "Bearer nope"})
        delete = await anonymous.delete("/snapshots/801/", headers={"Authorization": "Bearer nope"})
    assert (missing.status_code, wrong.status_code, delete.status_code) == (401, 401, 401)
    assert missing.json()["detail"] != wrong.json()["detail"]
    assert 801 in provider.snapshots


async def test_paths_are_exact_no_slash_redirects(http: httpx2.AsyncClient) -> None:
    assert (await http.get("/snapshots")).status_code == 404
    assert (await http.delete("/snapshots/801")).status_code == 404
    assert (await http.get("/snapshots/801/")).status_code == 405
    assert (await http.post("/snapshots/abc/restore/")).status_code == 404


async def test_a_non_integer_server_filter_is_400(http: httpx2.AsyncClient) -> None:
    response = await http.get("/snapshots/", params={"server_id": "web"})
    assert response.status_code == 400 and "server_id" in response.json()


async def test_pagination_gives_next_and_previous_links(http: httpx2.AsyncClient, provider: ProviderState) -> None:
    provider.page_size = 4
    first = (await http.get("/snapshots/")).json()
    assert first["count"] == 9 and len(first["results"]) == 4 and first["previous"] is None
    assert first["next"] == "https://sim.test/api/v1/snapshots/?page=2"
    last = (await http.get("/snapshots/", params={"page": 3})).json()
    assert len(last["results"]) == 1 and last["next"] is None
    assert (await http.get("/snapshots/", params={"page": 4})).status_code == 404


async def test_faults_answer_before_auth_and_are_recorded(http: httpx2.AsyncClient, provider: ProviderState) -> None:
    provider.inject(Fault.html_page(502))
    provider.inject(Fault.rate_limit("7"))
    page = await http.get("/snapshots/")
    assert page.status_code == 502 and page.headers["content-type"].startswith("text/html")
    limited = await http.get("/snapshots/")
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "7")
    assert (await http.get("/snapshots/")).status_code == 200
    assert [r.fault for r in provider.requests] == ["html", "json", None]


async def test_a_lost_answer_fault_still_does_the_work(http: httpx2.AsyncClient, provider: ProviderState) -> None:
    provider.inject(Fault.lost_answer(502, method="DELETE"))
    assert (await http.delete("/snapshots/798/")).status_code == 502
    assert 798 not in provider.snapshots
