"""CPU limits like a Kubernetes pod's: a cgroup per replica with a CPU quota, made and removed by the benchmark.

A pod's `resources.limits.cpu: 250m` is a CFS quota of 25 ms per 100 ms period: `cpu.cfs_quota_us` /
`cpu.cfs_period_us` on cgroup v1, `cpu.max` on cgroup v2. This module finds which of the two it can write
(as root), makes one cgroup per capped process under a name with a fixed prefix, moves the process in, and
removes the cgroup when done, also after a failure; cgroups left by a crashed run are removed first.
Where neither can be written, `CpuCaps.unavailable` says why and callers skip the capped measures.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREFIX = "vps-snapshots-mcp-bench-"
PERIOD_US = 100_000
V1_CPU = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CpuCaps:
    """Makes capped cgroups under the first writable hierarchy: cgroup v1's cpu controller, or cgroup v2."""

    def __init__(self, v1: Path = V1_CPU, v2: Path = V2_ROOT) -> None:
        self.root: Path | None = None
        self.version = 0
        self.unavailable = ""
        if (v1 / "cpu.cfs_quota_us").exists() and _writable(v1):
            self.root, self.version = v1, 1
        elif (v2 / "cgroup.controllers").exists() and _writable(v2):
            if "cpu" not in (v2 / "cgroup.controllers").read_text().split():
                self.unavailable = "cgroup v2 without the cpu controller"
            else:
                self.root, self.version = v2, 2
        else:
            self.unavailable = "no writable cgroup cpu controller (needs root, and cgroup v1 cpu or cgroup v2)"
        if self.root is not None:
            try:
                self.remove_stale()
                if self.version == 2 and "cpu" not in (v2 / "cgroup.subtree_control").read_text().split():
                    (v2 / "cgroup.subtree_control").write_text("+cpu")
            except OSError as exc:
                self.root, self.version = None, 0
                self.unavailable = f"cgroups cannot be written here ({exc.strerror})"

    def remove_stale(self) -> None:
        """Remove the cgroups a crashed run left (its pid, in the name, is gone): processes go back to the root."""
        assert self.root is not None
        for group in self.root.glob(f"{PREFIX}*"):
            owner = group.name.removeprefix(PREFIX).partition("-")[0]
            if not owner.isdigit() or not _alive(int(owner)):
                self._remove(group)

    def _remove(self, group: Path) -> None:
        assert self.root is not None
        with contextlib.suppress(OSError):
            for pid in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):  # it may have exited meanwhile
                    (self.root / "cgroup.procs").write_text(pid)
        with contextlib.suppress(OSError):
            group.rmdir()

    @contextmanager
    def capped(self, name: str, cpus: float) -> Iterator[Path]:
        """A new cgroup limited to `cpus` CPUs; yields its directory, removed on the way out."""
        assert self.root is not None, self.unavailable
        group = self.root / f"{PREFIX}{os.getpid()}-{name}"
        group.mkdir()
        try:
            quota = max(1000, round(cpus * PERIOD_US))
            if self.version == 1:
                (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (group / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            yield group
        finally:
            self._remove(group)

    @staticmethod
    def move(group: Path, pid: int) -> None:
        """Put process `pid` (all its threads) into `group`."""
        (group / "cgroup.procs").write_text(str(pid))

    @staticmethod
    def throttled_s(group: Path) -> float:
        """Seconds the group's processes were held back by the quota so far."""
        for line in (group / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "throttled_time":  # v1, nanoseconds
                return int(value) / 1e9
            if key == "throttled_usec":  # v2
                return int(value) / 1e6
        return 0.0
