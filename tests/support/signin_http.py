"""Signing a person in on the approval page over plain HTTP (no browser), through the test OpenID provider's login
form: for the sign-in tests and for the load clients of the benchmarks (which load nothing of the server)."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx2

from .oidc import Issuer


def sign_in_over_http(http: httpx2.Client, url: str, idp: Issuer, user: str, *, next_path: str = "/approve/") -> str:
    """Sign `user` in on the server at `url` through the IdP's login form, as a browser would but over plain HTTP
    (`http` keeps the cookies; it must not follow redirects); the callback URL the IdP sent the browser to."""
    answer = http.get(f"{url}/approve/login", params={"next": next_path})
    assert answer.status_code == 302, answer.text
    callback = idp.follow_login(http, answer, user, None)
    assert urlsplit(callback).path == "/approve/callback", callback
    return callback


def session_cookie(http: httpx2.Client) -> str:
    [value] = [cookie.value for cookie in http.cookies.jar if cookie.name.endswith("vps-approve") and cookie.value]
    return str(value)
