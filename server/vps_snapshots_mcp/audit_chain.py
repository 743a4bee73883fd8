"""The audit trail's hash chain: sealing a line, finding where a file's chain stands, and verifying a file.

Each line of the trail is a JSON object whose last three fields are

    seq    the line's number in the file, from 1
    prev   the hash of the line before it: its `hash`, or for a line that has none (cut short by a crash,
           or written before the chain began) the SHA-256 of its bytes; GENESIS for a file's first line
    hash   the SHA-256 (hex) of the line's bytes up to `,"hash"`, closed with `}`

so a line changed (its own hash, or the next line's `prev`), removed (a `seq` skipped) or reordered (a
`seq` out of place) is found, and named, by `verify`. A leaf: it imports nothing from the package, so
`vps-snapshots-mcp audit verify` reads a file without loading the server.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
"""The `prev` of a file's first line."""

_HASH_TAIL = re.compile(rb',"hash":"([0-9a-f]{64})"\}')


def chained(line: bytes) -> tuple[dict[str, Any], str] | None:
    """A line's record and hash when it is an intact chained line (its hash matches its bytes), else None."""
    match = _HASH_TAIL.search(line, max(0, len(line) - 76))
    if match is None or match.end() != len(line):
        return None
    body = line[: match.start()] + b"}"
    if hashlib.sha256(body).hexdigest() != match.group(1).decode():
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("seq"), int):
        return None
    if not isinstance(record.get("prev"), str):
        return None
    return record, match.group(1).decode()


def hash_of(line: bytes) -> str:
    """What the next line's `prev` holds: the line's own hash, or for a line that is none (cut short by a
    crash, or written before the chain) the SHA-256 of its bytes."""
    found = chained(line)
    return found[1] if found is not None else hashlib.sha256(line).hexdigest()


def seal(record: dict[str, Any], seq: int, prev: str) -> bytes:
    """The record as one chained line, with its newline."""
    body = json.dumps({**record, "seq": seq, "prev": prev}, ensure_ascii=True, separators=(",", ":")).encode()
    return body[:-1] + b',"hash":"' + hashlib.sha256(body).hexdigest().encode() + b'"}\n'


def sealed_hash(line: bytes) -> str:
    """The hash of a line `seal` made (what the next line's `prev` holds), without parsing it again."""
    return line[-67:-3].decode()


def chain_head(fd: int, size: int) -> tuple[int, str, bool]:
    """(the next line's seq, its prev, whether the file ends in a line cut short) for a file of `size` bytes,
    read backwards from the end until a chained line is found (or the start: a file written before the chain)."""
    if size == 0:
        return 1, GENESIS, False
    buffer, start, step = b"", size, 4096
    while True:
        start = max(0, start - step)
        buffer = os.pread(fd, size - start - len(buffer), start) + buffer
        torn = not buffer.endswith(b"\n")
        lines = (buffer if torn else buffer[:-1]).split(b"\n")
        complete = lines if start == 0 else lines[1:]  # the first piece may be the end of an earlier line
        for back, line in enumerate(reversed(complete)):
            found = chained(line)
            if found is not None:
                return found[0]["seq"] + back + 1, found[1] if back == 0 else hash_of(complete[-1]), torn
        if start == 0:
            return len(lines) + 1, hash_of(lines[-1]), torn
        step *= 2


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str
    """One line: the summary (lines, the last line's number and hash, lines not covered), or the first
    line found changed, removed or reordered and what is wrong with it."""


def verify(data: bytes) -> Verdict:
    """Check a whole trail's chain; name the first line changed, removed or reordered."""
    torn_end = bool(data) and not data.endswith(b"\n")
    lines = (data if torn_end else data[:-1]).split(b"\n") if data else []
    seqs: dict[int, int] = {}
    for number, line in enumerate(lines, 1):
        found = chained(line)
        if found is not None:
            seqs.setdefault(found[0]["seq"], number)
    began = False  # a chained line has been seen: every line from here on must be covered
    uncovered: list[int] = []
    for number, line in enumerate(lines, 1):
        found = chained(line)
        last = number == len(lines)
        if found is None:
            if last and torn_end:
                return Verdict(False, f"line {number}: truncated: the last line is cut short (a write interrupted)")
            if (_is_json(line) and (began or b'"hash":' in line)) or (began and last):
                return Verdict(False, f"line {number} was changed: it does not match its hash")
            uncovered.append(number)  # cut short by a crash (the next line chains from it) or before the chain
            continue
        record, _ = found
        seq, prev = record["seq"], record["prev"]
        expected = hash_of(lines[number - 2]) if number > 1 else GENESIS
        if seq > number and seqs.get(number, 0) > number:
            return Verdict(False, f"line {number} is out of order: it was written as line {seq}")
        if seq > number:
            removed = _lines(seq - number)
            return Verdict(False, f"line {number}: {removed} removed before it (it was written as line {seq})")
        if seq < number:
            return Verdict(False, f"line {number} is out of order or repeated: it was written as line {seq}")
        if prev != expected:
            if number == 1:
                return Verdict(False, "line 1 was changed: it does not start a chain")
            return Verdict(False, f"line {number - 1} was changed: line {number} chains from a different line")
        began = True
    if not lines:
        return Verdict(True, "empty: no lines")
    head = f"{len(lines)} lines, chain intact; last line {len(lines)} hash {hash_of(lines[-1])}"
    if uncovered:
        head += f"; not covered by the chain (cut short by a crash, or written before it): lines {_ranges(uncovered)}"
    return Verdict(True, head)


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _lines(count: int) -> str:
    return "1 line" if count == 1 else f"{count} lines"


def _ranges(numbers: list[int]) -> str:
    spans: list[list[int]] = []
    for n in numbers:
        if spans and spans[-1][1] == n - 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
