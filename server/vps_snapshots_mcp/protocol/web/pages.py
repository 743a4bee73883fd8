"""The approval pages: a person signed in (`signin.py`) sees one plan exactly and approves or declines it.

    GET  /approve/            the pending approvals the signed-in person may decide
    GET  /approve/<id>        the plan (action, snapshot, server, the snapshot's date, what is lost, the safety
                              snapshot, who asked, when it expires, its status); Approve and Decline for a person
                              who may decide (`Approvals.may_decide`), the reason otherwise; 404 unknown, 410 expired
    POST /approve/<id>        decision=approve|decline with the session's CSRF token -> `Approvals.approve/decline`

Not signed in: a GET is sent to sign in and back (`/approve/login?next=/approve/<id>`), a POST is refused (403).
A POST also needs the session's CSRF token and, when the browser says where it comes from (`Sec-Fetch-Site`,
`Origin`), this site: a page of another site can neither read the plan nor decide it. The URL holds only the opaque id.

Every provider string (the provider may be hostile) is escaped for HTML and made inert: control, format and bidi
characters are shown as `\\uXXXX` escapes, each string is isolated (`<bdi>`) and long ones wrap. The pages carry
no script at all (their Content-Security-Policy allows none) and refuse framing (`signin.security_headers`).
"""

from __future__ import annotations

import html
import logging
import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ...consent.approvals import Approvals, ApprovalView
from ...person import Person
from ..http import HttpRoute
from .signin import PREFIX, STYLE, SignIn, form_of, html_page, security_headers

logger = logging.getLogger(__name__)

_ID = re.compile(r"[A-Za-z0-9_\-]{20,100}")
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
STYLE_PAGES = STYLE + (
    "body{overflow-wrap:anywhere}h1{font-size:1.5rem;margin-bottom:.25rem}"
    "dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.35rem 1rem}"
    "dt{font-weight:600;color:#333}dd{margin:0;overflow-wrap:anywhere;word-break:break-word}"
    "bdi{unicode-bidi:isolate;overflow-wrap:anywhere}code{background:#f3f3f3;padding:0 .2rem}"
    ".danger{color:#b00020;border:2px solid #b00020;border-radius:6px;padding:.6rem .8rem;font-weight:600}"
    ".notice{border:2px solid #555;border-radius:6px;padding:.6rem .8rem;background:#f7f7f7}"
    ".decide{display:flex;gap:1rem;margin:1.2rem 0}"
    "button.approve,button.decline{font-size:1.05rem;padding:.5rem 1.2rem;border-radius:6px;border:1px solid #333;"
    "cursor:pointer}.approve{background:#b00020;color:#fff}"
    ".decline{background:#fff;color:#000}footer{margin-top:2rem;border-top:1px solid #ddd;padding-top:.6rem;"
    "font-size:.9rem;color:#444}footer form{display:inline}li{margin:.4rem 0;overflow-wrap:anywhere}"
)
_WHAT = {"restore": "Restore", "delete": "Delete"}


def inert(value: object) -> str:
    """`value` as text a page shows and nothing more: control, format and bidi characters as visible `\\uXXXX`
    escapes. Not yet HTML-escaped (`shown` does both)."""
    text = str(value)
    return "".join(
        f"\\u{ord(ch):04x}" if ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Co", "Cs") else ch
        for ch in text
    )


def shown(value: object | None, *, missing: str = "(not given)") -> str:
    """A provider string as HTML: made inert, escaped, isolated from the text around it."""
    if value is None or value == "":
        return f"<em>{html.escape(missing)}</em>"
    return f"<bdi>{html.escape(inert(value))}</bdi>"


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class ApprovalPages:
    """The pages, on the sign-in's sessions and the running server's approval service."""

    def __init__(self, signin: SignIn, approvals: Callable[[], Approvals | None], *, site_url: str) -> None:
        self._signin = signin
        self._approvals = approvals
        site = urlsplit(site_url)
        self._origin = f"{site.scheme}://{site.netloc}"

    def routes(self) -> list[HttpRoute]:
        """The pages' routes (after the sign-in's, whose /approve/login, /callback and /logout come first)."""
        guarded = self._signin.guarded
        return [
            HttpRoute(f"{PREFIX}/", ("GET",), guarded(self.pending)),
            HttpRoute(f"{PREFIX}/{{approval_id}}", ("GET",), guarded(self.show)),
            HttpRoute(f"{PREFIX}/{{approval_id}}", ("POST",), guarded(self.decide)),
        ]

    # --- the routes -------------------------------------------------------------------------------------

    async def pending(self, request: Request) -> Response:
        person = await self._signin.signed_in(request)
        if person is None:
            return self._to_login(f"{PREFIX}/")
        approvals = self._service()
        if approvals is None:
            return self._unavailable()
        mine = [
            view
            for view in await approvals.pending()
            if approvals.may_decide(person.principal_key, person.scopes, view, groups=person.groups).allowed
        ]
        items = "".join(
            f'<li><a href="{PREFIX}/{html.escape(view.approval_id)}">{_WHAT[view.plan.action]} snapshot '
            f"{view.plan.snapshot_id} {shown(view.plan.snapshot_name)}</a> on server {view.plan.server_id} "
            f"{shown(view.plan.server_name)}, asked by {shown(view.requester)}, expires {_when(view.expires_at)}</li>"
            for view in mine
        )
        listing = f'<ul id="pending">{items}</ul>' if mine else '<p id="pending">Nothing is waiting for you.</p>'
        body = f"<h1>Approvals</h1><p>Waiting for your decision:</p>{listing}"
        return self._page(request, person, "Approvals", body)

    async def show(self, request: Request) -> Response:
        approval_id = request.path_params["approval_id"]
        if not _ID.fullmatch(approval_id):
            return self._unknown(request, None)
        person = await self._signin.signed_in(request)
        if person is None:
            return self._to_login(f"{PREFIX}/{approval_id}")
        approvals = self._service()
        if approvals is None:
            return self._unavailable()
        view = await approvals.view(approval_id)
        if view is None:
            return self._unknown(request, person)
        return self._plan_page(request, person, approvals, view)

    async def decide(self, request: Request) -> Response:
        approval_id = request.path_params["approval_id"]
        person = await self._signin.signed_in(request)
        form = await form_of(request)
        if not _ID.fullmatch(approval_id) or person is None or form is None:
            return self._refused(request, person, "Not signed in on this server, or not a form of its pages.")
        if not self._same_origin(request) or not self._signin.check_csrf(request, person, form.get("csrf")):
            return self._refused(request, person, "This decision did not come from a page of this server.")
        decision = form.get("decision")
        if decision not in ("approve", "decline"):
            return self._refused(request, person, "Choose Approve or Decline on the approval page.", status=400)
        approvals = self._service()
        if approvals is None:
            return self._unavailable()
        view = await approvals.view(approval_id)
        if view is None:
            return self._unknown(request, person)
        if decision == "approve":
            verdict = await approvals.approve(approval_id, person)
        else:
            verdict = await approvals.decline(approval_id, person)
        if not verdict.allowed:
            return self._refused(request, person, f"Nothing was decided: {verdict.reason}.")
        logger.info("approval %sd on the page by %s", decision, person.principal_key)
        if decision == "approve":
            title, words = (
                "Approved",
                (
                    f"You approved: {view.plan.action} of snapshot {view.plan.snapshot_id}. It runs once, when the "
                    "assistant's call goes on (or it calls again), and only if the snapshot is still what you saw. "
                    "You can close this page."
                ),
            )
        else:
            title, words = "Declined", "You declined it. Nothing will run; you can close this page."
        body = f'<h1>{title}</h1><p id="result">{html.escape(words)}</p>'
        return self._page(request, person, title, body)

    # --- the plan ---------------------------------------------------------------------------------------

    def _plan_page(self, request: Request, person: Person, approvals: Approvals, view: ApprovalView) -> Response:
        plan = view.plan
        verdict = approvals.may_decide(person.principal_key, person.scopes, view, groups=person.groups)
        asked = person.principal_key == view.requester
        if not (asked or verdict.allowed or view.decided_by == person.principal_key):
            # someone else: why they may not decide, and nothing of the plan (it is not theirs to read)
            body = (
                f'<h1>Approval</h1><p class="notice" id="refusal">You may not decide this approval: '
                f"{html.escape(verdict.reason)}. Nothing has changed.</p>"
            )
            return self._page(request, person, "Approval", body, status=403)
        action = _WHAT[plan.action].upper()
        requester = "you" if asked else shown(view.requester)
        safety = "none (a delete takes none)"
        if plan.action == "restore":
            safety = "yes: a snapshot of the server as it is now is taken first" if plan.safety_snapshot else "no"
        rows = [
            ("Action", f'<strong id="action">{action}</strong>'),
            (
                "Snapshot",
                f'<span id="snapshot-id">{plan.snapshot_id}</span> <span id="snapshot-name">'
                f"{shown(plan.snapshot_name)}</span>",
            ),
            ("Taken at", f'<span id="created-at">{shown(plan.created_at)}</span>'),
            ("Server", f'{shown(plan.server_id)} <span id="server-name">{shown(plan.server_name)}</span>'),
            ("Safety snapshot", html.escape(safety)),
            ("Asked by", f'<span id="requester">{requester}</span>'),
            ("Expires", _when(view.expires_at)),
            (
                "Status",
                f'<strong id="status">{html.escape(view.status)}</strong>'
                + (f" by {shown(view.decided_by)}" if view.decided_by else ""),
            ),
        ]
        facts = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
        lost = plan.lost or f"{action} cannot be undone."
        danger = f'<p class="danger" id="lost">Destructive: {action} — {html.escape(inert(lost))}</p>'
        if verdict.allowed:
            csrf = html.escape(self._signin.csrf_token(request, person))
            target = f"{PREFIX}/{html.escape(view.approval_id)}"
            decide = (
                f'<div class="decide"><form method="post" action="{target}"><input type="hidden" name="csrf" '
                f'value="{csrf}"><input type="hidden" name="decision" value="approve"><button class="approve" '
                f'type="submit" id="approve">Approve: {action.lower()} now</button></form>'
                f'<form method="post" action="{target}"><input type="hidden" name="csrf" value="{csrf}">'
                f'<input type="hidden" name="decision" value="decline"><button class="decline" type="submit" '
                f'id="decline">Decline</button></form></div><p>Why you may decide: {html.escape(verdict.reason)}.</p>'
            )
        elif asked and view.status == "pending":  # the one who asked on a protected server: may withdraw only
            csrf = html.escape(self._signin.csrf_token(request, person))
            decide = (
                f'<p class="notice" id="refusal">You may not approve this: {html.escape(verdict.reason)}.</p>'
                f'<form method="post" action="{PREFIX}/{html.escape(view.approval_id)}"><input type="hidden" '
                f'name="csrf" value="{csrf}"><input type="hidden" name="decision" value="decline">'
                '<button class="decline" type="submit" id="withdraw">Withdraw my request</button></form>'
            )
        else:
            decide = f'<p class="notice" id="refusal">Nothing to decide: {html.escape(verdict.reason)}.</p>'
        body = f"<h1>{_WHAT[plan.action]} snapshot {plan.snapshot_id}?</h1>{danger}<dl>{facts}</dl>{decide}"
        return self._page(
            request, person, f"Approve {plan.action}?", body, status=410 if view.status == "expired" else 200
        )

    # --- helpers ----------------------------------------------------------------------------------------

    def _service(self) -> Approvals | None:
        return self._approvals()

    def _same_origin(self, request: Request) -> bool:
        """False when the browser says the POST comes from elsewhere: `Sec-Fetch-Site` other than same-origin,
        or an `Origin` of another site ("null" is what a browser sends under Referrer-Policy no-referrer).
        A client that says neither is judged by the CSRF token alone."""
        fetched_from = request.headers.get("sec-fetch-site")
        if fetched_from is not None and fetched_from != "same-origin":
            return False
        origin = request.headers.get("origin")
        return origin in (None, "null", self._origin)

    def _page(self, request: Request, person: Person | None, title: str, body: str, *, status: int = 200) -> Response:
        footer = ""
        if person is not None:
            csrf = html.escape(self._signin.csrf_token(request, person))
            name, subject, issuer = (html.escape(inert(v)) for v in (person.name, person.subject, person.issuer))
            footer = (
                f'<footer><span id="who">Signed in as <strong>{name}</strong> ({subject} at {issuer}).</span> '
                f'<a href="{PREFIX}/">All approvals</a> · <form method="post" action="{PREFIX}/logout">'
                f'<input type="hidden" name="csrf" value="{csrf}"><button type="submit">Sign out</button></form>'
                "</footer>"
            )
        return html_page(title, body + footer, status=status, style=STYLE_PAGES)

    def _unknown(self, request: Request, person: Person | None) -> Response:
        body = (
            '<h1>No such approval</h1><p class="notice" id="refusal">This approval is unknown, or was forgotten '
            "after it expired. Nothing will run; ask for a new one.</p>"
        )
        return self._page(request, person, "No such approval", body, status=404)

    def _refused(self, request: Request, person: Person | None, why: str, *, status: int = 403) -> Response:
        body = f'<h1>Not decided</h1><p class="notice" id="refusal">{html.escape(why)} Nothing has changed.</p>'
        return self._page(request, person, "Not decided", body, status=status)

    def _unavailable(self) -> Response:
        return html_page("Unavailable", "<p>The approval service is not running; try again.</p>", status=503)

    def _to_login(self, path: str) -> Response:
        return RedirectResponse(self._signin.login_url(path), status_code=303, headers=security_headers())


__all__ = ["ApprovalPages", "inert", "shown"]
