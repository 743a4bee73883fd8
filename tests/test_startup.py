"""Start-up pays only for what serving needs: a host starts the server far more often than it calls a tool."""

from __future__ import annotations

import gc
import subprocess
import sys

from vps_snapshots_mcp.start import collector_paused

PROBE = """
import logging, sys

class ImportsAsked:  # records every top-level import asked for, whether or not it is installed
    asked = set()
    def find_spec(self, name, path=None, target=None):
        self.asked.add(name.split(".")[0])
        return None

sys.meta_path.insert(0, ImportsAsked())
from vps_snapshots_mcp.cli import configure_logging
from vps_snapshots_mcp.compose import build_server
from vps_snapshots_mcp.settings import from_sources

if sys.argv[1] == "configured":
    configure_logging("INFO")
before = list(logging.getLogger().handlers)
server = build_server(from_sources({}, {"VPS_API_URL": "http://127.0.0.1:9/v1", "VPS_API_TOKEN": "t" * 24}))
print("rich" in ImportsAsked.asked, logging.getLogger().handlers == before, len(logging.getLogger().handlers))

import anyio
from mcp import Client

async def start():  # what a host does at every start: initialize (the lifespan opens), then tools/list
    async with Client(server, mode="legacy") as client:
        await client.list_tools()

anyio.run(start)
loaded = ("protocol.tools", "protocol.consent", "provider.client", "models", "waiting", "consent.decision",
          "consent.tokens", "consent.approvals", "protocol.approval", "webhook")
print(sorted(m for m in sys.modules if m in {f"vps_snapshots_mcp.{name}" for name in loaded} | {"tomllib"}))
print(len(server.prompts))
"""


def _probe(case: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, case], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.splitlines()


def test_a_configured_process_skips_the_sdks_rich_log_handler_and_keeps_its_own() -> None:
    assert _probe("configured")[0] == "False True 1"


def test_an_unconfigured_process_gets_the_sdks_logging_as_before() -> None:
    # Embedding build_server without configuring logging: the SDK's own handler is installed, unchanged.
    assert _probe("bare")[0] == "True False 1"


def test_the_tools_the_consent_machinery_and_the_provider_client_load_at_the_first_call_not_at_start() -> None:
    # tools/list is answered from tools.json (published.py); test_tools_contract checks the first call loads them.
    # The provider client, its records (models) and the shared waits are made at the first call (app_context),
    # as are the confirmation tokens and the approval service; the TOML parser loads only to read a policy file.
    assert _probe("configured")[1] == "[]"


def test_the_prompts_register_at_the_first_prompts_request_not_at_start() -> None:
    # test_long_operations and test_host_protocol list and render them through a client; registering three costs
    # about 3.5 ms at every start.
    assert _probe("configured")[2] == "0"


def test_the_http_app_loads_neither_the_tools_nor_the_provider_client() -> None:
    probe = (
        "import sys, vps_snapshots_mcp.protocol.http; "
        "print(sorted(m for m in sys.modules if m.removeprefix('vps_snapshots_mcp.') in "
        "('protocol.tools', 'protocol.consent', 'provider.client', 'models')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


SERVING = """
import gc, sys
from vps_snapshots_mcp.protocol.server import SnapshotsServer

# Where it would serve: the collector on, and start-up's objects set aside (frozen), none left for it to walk.
SnapshotsServer.run = lambda self, transport: print(
    transport, gc.isenabled(), gc.get_freeze_count() > 50_000, len(gc.get_objects()) < 2_000
)
from vps_snapshots_mcp.start import main

print(gc.isenabled())
sys.exit(main([]))
"""


def test_the_cycle_collector_is_paused_only_while_the_server_starts_and_runs_while_it_serves() -> None:
    environment = {"PATH": "/usr/bin:/bin", "VPS_API_URL": "http://127.0.0.1:9/v1", "VPS_API_TOKEN": "t" * 24}
    done = subprocess.run(
        [sys.executable, "-c", SERVING], capture_output=True, text=True, timeout=60, check=True, env=environment
    )
    assert done.stdout.split() == ["True", "stdio", "True", "True", "True"]


def test_a_paused_collector_comes_back_as_it_was_with_what_the_pause_made_set_aside() -> None:
    assert gc.isenabled()
    try:
        with collector_paused():
            assert not gc.isenabled()
            made: list[list[int]] = [[] for _ in range(1_000)]
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(made)  # set aside: none of it is left for the collector to walk
        assert not any(tracked is made[0] for tracked in gc.get_objects())
        gc.disable()
        frozen = gc.get_freeze_count()
        with collector_paused():
            more: list[list[int]] = [[] for _ in range(1_000)]
        assert not gc.isenabled()  # an embedding program that keeps it off keeps it off,
        assert gc.get_freeze_count() == frozen and any(tracked is more[0] for tracked in gc.get_objects())  # unfrozen
    finally:
        gc.enable()
        gc.unfreeze()  # this test process's objects go back to the collector
