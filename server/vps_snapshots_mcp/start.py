"""The command's entry point: the command line loaded with Python's cycle collector paused, then run.

`vps-snapshots-mcp` and `python -m vps_snapshots_mcp` start here. Loading the libraries and building the server
allocate hundreds of thousands of objects, nearly all of which live as long as the process; each full
collection on the way walks every one of them again, for nothing. The collector is paused while the command line
loads, and again while `serve` loads the SDK and builds the server (`cli.serve`); it runs as usual otherwise.

When a pause ends, every object the collector tracks (start-up's, and anything made before) is set aside for
good (`gc.freeze`): otherwise the collector's first run after it walks every object the pause made (about 40 ms
on a 2-core machine, just before the first request is read), and every full collection walks them again while
the server serves. The garbage cycles among them (a few hundred objects at start-up) are kept rather than
collected. This is the command's entry point: a program that embeds the server and runs its own collector keeps
it off before calling in, and then nothing is frozen.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cycle collector off for the block, then as it was; when it was on, what it tracks is set aside first."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()
            gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    with collector_paused():
        from .cli import main as run
    return run(argv)
