"""Telling approvers: a JSON POST to each webhook the policy names whenever an approval is pending.

The message is Slack-compatible (`text`) and carries the plan and the link, and
nothing secret (no token, no key; the link holds only the approval's opaque
id, which authenticates nothing). Provider strings (a snapshot's or server's
name) are neutralised first: control and bidi characters dropped, and `&`, `<`,
`>` escaped as Slack's mrkdwn asks, so a name cannot mention `@channel`, forge a
link or reorder the text.

Sent in the background, each in a thread of its own with a short timeout
(`TIMEOUT_S`): a webhook that fails, hangs or answers slowly never blocks,
changes or delays the approval, and its URL (a secret, for Slack) is never
logged; the log names the rule. Only this module and the provider's request
path import the HTTP library.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx2

if TYPE_CHECKING:
    from .access import AccessPolicy
    from .consent.approvals import ApprovalView

logger = logging.getLogger(__name__)

TIMEOUT_S = 3.0
"""Each POST's connect, write and read timeout."""

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def neutral(text: str | None, limit: int = 200) -> str:
    """A provider string made inert for a chat message: one line, no bidi or control characters, mrkdwn escaped."""
    plain = _UNSAFE.sub("", text or "")[:limit]
    return plain.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def message(view: ApprovalView, link: str) -> dict[str, Any]:
    """The JSON body: `text` for Slack and its likes, and the same facts as fields."""
    plan = view.plan
    expires = datetime.fromtimestamp(view.expires_at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    server = f"server {plan.server_id} {neutral(plan.server_name)!r}" if plan.server_id is not None else "a server"
    safety = " (a safety snapshot is taken first)" if plan.safety_snapshot else ""
    who = "a second person holding the approve permission" if view.protected else "the person who asked"
    text = (
        f"Approval pending: {plan.action} snapshot {plan.snapshot_id} {neutral(plan.snapshot_name)!r} of {server}"
        f"{safety}, asked by {neutral(view.requester)}. To be approved by {who} before {expires}: {link}"
    )
    return {
        "text": text,
        "approval": {
            "action": plan.action,
            "snapshot_id": plan.snapshot_id,
            "snapshot_name": neutral(plan.snapshot_name),
            "server_id": plan.server_id,
            "server_name": neutral(plan.server_name),
            "safety_snapshot": plan.safety_snapshot,
            "requester": neutral(view.requester),
            "protected": view.protected,
            "expires_at": expires,
            "link": link,
        },
    }


class Webhooks:
    """Tells each webhook of the policy about a pending approval, in the background."""

    def __init__(self, access: AccessPolicy, *, timeout_s: float = TIMEOUT_S) -> None:
        self._access = access
        self._timeout_s = timeout_s

    async def __call__(self, view: ApprovalView, link: str) -> None:
        hooks = self._access.webhooks(view.requester, view.plan.server_id)
        if not hooks:
            return
        body = json.dumps(message(view, link)).encode()
        for where, url in hooks:
            threading.Thread(target=self._post, args=(where, url, body), daemon=True, name="webhook").start()

    def _post(self, where: str, url: str, body: bytes) -> None:
        try:
            with httpx2.Client(timeout=self._timeout_s, follow_redirects=False, trust_env=False) as client:
                answer = client.post(url, content=body, headers={"content-type": "application/json"})
        except Exception as exc:  # whatever it is, the approval goes on; never the URL in the log
            logger.warning("the webhook of the policy's %s was not told (%s)", where, type(exc).__name__)
            return
        if answer.status_code >= 300:
            logger.warning("the webhook of the policy's %s answered %s", where, answer.status_code)


__all__ = ["TIMEOUT_S", "Webhooks", "message", "neutral"]
