"""End to end over a real loopback socket: the client against the served simulator, and `sandbox`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import SecretStr

from vps_snapshots_mcp.errors import ProviderTimeoutError
from vps_snapshots_mcp.provider.client import SnapshotsClient
from vps_snapshots_mcp.simulator import Fault, ProviderState

from .support.world import TOKEN

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_a_full_cycle_over_a_real_socket(served_provider: str, provider: ProviderState) -> None:
    async with SnapshotsClient(base_url=served_provider, token=SecretStr(TOKEN)) as client:
        created = await client.create_snapshot(12345, "over-tcp", "end to end")
        assert created.snapshot.status == "in_progress"
        assert {s.id for s in await client.list_snapshots(12345)} == {801, 798, created.snapshot.id}
        await client.restore_snapshot(801)
        await client.delete_snapshot(created.snapshot.id)
        assert {s.id for s in await client.list_snapshots(12345)} == {801, 798}
    assert [(r.method, r.path) for r in provider.mutations] == [
        ("POST", "/api/v1/snapshots/"),
        ("POST", "/api/v1/snapshots/801/restore/"),
        ("DELETE", f"/api/v1/snapshots/{created.snapshot.id}/"),
    ]
    assert all(r.authorized for r in provider.requests)


async def test_an_answer_slower_than_the_timeout_is_a_timeout(served_provider: str, provider: ProviderState) -> None:
    provider.inject(Fault.latency(1.0))  # longer than the 0.3 s timeout is all it takes; the socket waits it out
    async with SnapshotsClient(base_url=served_provider, token=SecretStr(TOKEN), timeout_s=0.3) as client:
        with pytest.raises(ProviderTimeoutError, match="Nothing was changed"):
            await client.list_snapshots()
    assert len(provider.requests) == 1  # timeouts are not retried


def test_the_sandbox_command_prints_a_url_and_token_that_work() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "vps_snapshots_mcp", "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(3)]
        assert lines[0].startswith("Provider simulator listening on http://127.0.0.1:")
        url = lines[1].removeprefix("export VPS_API_URL=")
        token = lines[2].removeprefix("export VPS_API_TOKEN=")
        assert url.endswith("/api/v1") and len(token) >= 20

        import anyio

        async def use_it() -> list[int]:
            async with SnapshotsClient(base_url=url, token=SecretStr(token)) as client:
                return [s.id for s in await client.list_snapshots(12345)]

        assert anyio.run(use_it) == [801, 798]
    finally:
        process.terminate()
        process.wait(timeout=10)
