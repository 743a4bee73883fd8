"""A provider simulator: the Snapshots API as a real ASGI app with a clock-driven state machine.

It is the embedded default for `--sandbox`, the demo and most tests, and can be
served on a loopback socket (`vps-snapshots-mcp sandbox`). It shares no code
with the client.
"""

from .app import API_PREFIX, create_app
from .faults import Fault
from .hostile import HOSTILE_SNAPSHOTS, HOSTILE_STRINGS, hostile_state
from .state import SNAPSHOT_LIMIT, ManualClock, ProviderState, RecordedRequest, seeded_state

__all__ = [
    "API_PREFIX",
    "HOSTILE_SNAPSHOTS",
    "HOSTILE_STRINGS",
    "SNAPSHOT_LIMIT",
    "Fault",
    "ManualClock",
    "ProviderState",
    "RecordedRequest",
    "create_app",
    "hostile_state",
    "seeded_state",
]
