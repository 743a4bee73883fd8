"""A provider simulator: the Snapshots API as a real ASGI app with a clock-driven state machine.

It is the embedded default for `--sandbox`, the demo and most tests, and can be
served on a loopback socket (`vps-snapshots-mcp sandbox`). It shares no code
with the client.
"""

from .app import API_PREFIX, create_app
from .faults import Fault
from .state import SNAPSHOT_LIMIT, ManualClock, ProviderState, RecordedRequest, seeded_state

__all__ = [
    "API_PREFIX",
    "SNAPSHOT_LIMIT",
    "Fault",
    "ManualClock",
    "ProviderState",
    "RecordedRequest",
    "create_app",
    "seeded_state",
]
