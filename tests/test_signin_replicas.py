"""Two replicas (their own processes) sharing one Redis: a person signed in on A is signed in on B, a sign-out on B
ends the session on A, and no line either process logs (at DEBUG) holds the session cookie or the client secret."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from .support.redis_server import RedisServer
from .support.signin_http import session_cookie, sign_in_over_http
from .support.signin_serving import APPROVAL_CLIENT, replicas

pytestmark = pytest.mark.slow


def test_a_session_made_on_one_replica_is_good_on_another_until_it_ends_there(
    served_provider: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    with replicas(served_provider, redis_server.url, tmp_path) as (idp, (a, b)):
        with httpx2.Client(timeout=20, follow_redirects=False) as http:
            answer = http.get(sign_in_over_http(http, a, idp, "alice"))
            assert answer.status_code == 303
            cookie = session_cookie(http)
        on_a = httpx2.Client(timeout=20, follow_redirects=False, cookies={"vps-approve": cookie})
        on_b = httpx2.Client(timeout=20, follow_redirects=False, cookies={"vps-approve": cookie})
        with on_a, on_b:
            page = on_b.get(f"{b}/approve/")
            assert page.status_code == 200 and "Signed in as <strong>Alice</strong>" in page.text
            token = page.text.split('name="csrf" value="')[1].split('"')[0]
            assert on_a.get(f"{a}/approve/").text.split('name="csrf" value="')[1].split('"')[0] == token
            assert on_b.post(f"{b}/approve/logout", data={"csrf": token}).status_code == 200
            assert on_a.get(f"{a}/approve/").status_code == 303  # ended everywhere
        secret = idp.clients[APPROVAL_CLIENT].client_secret
    logs = [path.read_text() for path in tmp_path.glob("replica-*.log")]
    assert len(logs) == 2 and any("signed in on the approval page" in log for log in logs)
    assert all(cookie not in log and secret not in log for log in logs)
