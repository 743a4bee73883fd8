"""A REAL OpenID Connect provider (npm `oidc-provider` on Node 22) on a free loopback port, for the sign-in tests.

The provider (`oidc_provider.mjs`) signs users in at a login form with a password check, requires PKCE, signs
RS256 ID tokens, and issues JWT access tokens whose audience is the MCP server's URL (a resource indicator), so
the server's own OAuth verifier (`--oauth-issuer`, `--oauth-jwks-url`) accepts them. `access_token` runs the whole
login over plain HTTP (no browser): authorization request, the login form, the consent, the code exchange.

Node 22 and the pinned `oidc-provider` are the CI's npm tools (`.ci/tools.sh`, installed into `.ci/.tools`);
when they are missing they are installed the same way, once.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2

from .redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".ci" / ".tools"
TYPESCRIPT_SDK = TOOLS / "node_modules" / "@modelcontextprotocol" / "sdk"
"""The TypeScript SDK (npm `@modelcontextprotocol/sdk`), installed with `.ci/tools.sh`'s npm tools."""
SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
USERS = {"alice": "alice-password-1", "bob": "bob-password-2"}
GROUPS = {"alice": ["operators"], "bob": ["operators", "approvers"]}
"""Each user's `groups` claim, in their ID tokens and access tokens (a policy rule may name a group)."""
SCOPES = ("vps-snapshots", "snapshots:read", "snapshots:create", "snapshots:restore", "snapshots:delete")
APPROVE_SCOPE = "snapshots:approve"
TOKEN_CLIENT = "mcp-test-client"
TOKEN_REDIRECT = "http://127.0.0.1:9/never-fetched"
START_DEADLINE_S = 30.0
INSTALL_DEADLINE_S = 600.0


@dataclass(frozen=True)
class Client:
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]


@dataclass
class Issuer:
    """A running provider: its issuer URL, JWKS URL, and the clients registered."""

    issuer: str
    resource: str
    clients: dict[str, Client] = field(default_factory=dict)
    log: Path | None = None

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    def access_token(
        self, user: str, scopes: tuple[str, ...] | list[str] = SCOPES, *, resource: str | None = None
    ) -> str:
        """A JWT access token for `resource` (default `self.resource`), as `user` (signed in with their password),
        with `scopes`."""
        client = self.clients[TOKEN_CLIENT]
        resource = resource or self.resource
        verifier = secrets.token_urlsafe(48)
        with httpx2.Client(timeout=10, follow_redirects=False) as http:
            location = self.authorize(
                http, client, user, scope=" ".join(["openid", *scopes]), verifier=verifier, resource=resource
            )
            code = parse_qs(urlsplit(location).query)["code"][0]
            answer = http.post(
                f"{self.issuer}/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": client.redirect_uris[0],
                    "code_verifier": verifier,
                    "resource": resource,
                },
                auth=(client.client_id, client.client_secret),
            )
            assert answer.status_code == 200, answer.text
            return str(answer.json()["access_token"])

    def authorize(
        self,
        http: httpx2.Client,
        client: Client,
        user: str,
        *,
        scope: str,
        verifier: str,
        resource: str | None = None,
        state: str = "s",
        password: str | None = None,
    ) -> str:
        """Run the authorization request and the login for `user`; the redirect back to the client (its URL)."""
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        params = {
            "client_id": client.client_id,
            "response_type": "code",
            "redirect_uri": client.redirect_uris[0],
            "scope": scope,
            "state": state,
            "nonce": secrets.token_urlsafe(16),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if resource is not None:
            params["resource"] = resource
        answer = http.get(f"{self.issuer}/auth", params=params)
        return self.follow_login(http, answer, user, password)

    def follow_login(self, http: httpx2.Client, answer: httpx2.Response, user: str, password: str | None) -> str:
        """Follow the provider's redirects from `answer`, filling its login form, until it sends the browser back
        to a client (outside the provider); that URL."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if answer.status_code in (302, 303):
                target = urljoin(str(answer.url), answer.headers["location"])
                if not target.startswith(self.issuer):
                    return target
                answer = http.get(target)
                continue
            assert answer.status_code == 200, (answer.status_code, answer.text[:500])
            form = re.search(r'action="([^"]+)"', answer.text)
            assert form is not None, answer.text[:500]
            answer = http.post(
                urljoin(str(answer.url), form.group(1)),
                data={"username": user, "password": USERS[user] if password is None else password},
            )
            assert answer.status_code != 401, "the provider refused the password"
        raise AssertionError("the login did not come back to the client in time")


def node_binary() -> str:
    """The Node `.ci/tools.sh` installed (npm `node@22`), or the machine's own when that is 22 or later."""
    installed = TOOLS / "node_modules" / ".bin" / "node"
    return str(installed) if installed.exists() else "node"


def ensure_installed() -> tuple[str, str]:
    """Node 22 and the oidc-provider entry file, installed by `.ci/tools.sh` when missing."""
    module = TOOLS / "node_modules" / "oidc-provider" / "lib" / "index.js"
    if not module.exists():
        TOOLS.mkdir(parents=True, exist_ok=True)
        with (TOOLS / ".install-lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # pytest's workers start together: one installs, the others wait
            if not module.exists():
                subprocess.run(
                    ["/bin/bash", "-c", ". .ci/tools.sh && ensure_node_tools"],
                    cwd=ROOT,
                    check=True,
                    timeout=INSTALL_DEADLINE_S,
                    stdout=subprocess.DEVNULL,
                )
    return node_binary(), str(module)


@contextmanager
def oidc_provider(
    resource: str,
    *,
    redirect_uris: tuple[str, ...] = (),
    client_id: str = "approval-page",
    workdir: Path,
    also_for: tuple[str, ...] = (),
) -> Iterator[Issuer]:
    """Start the provider; `resource` is the MCP server's URL (the access tokens' audience; `also_for`: more
    resources a token may be asked for, such as each replica's own public URL); a confidential client `client_id`
    for `redirect_uris` (the approval page's callback), and one for `access_token`."""
    node, module = ensure_installed()
    port = free_port()
    clients = {
        TOKEN_CLIENT: Client(TOKEN_CLIENT, secrets.token_urlsafe(24), (TOKEN_REDIRECT,)),
    }
    if redirect_uris:
        clients[client_id] = Client(client_id, secrets.token_urlsafe(24), tuple(redirect_uris))
    config = {
        "port": port,
        "module": module,
        "users": USERS,
        "groups": GROUPS,
        "clients": [
            {"client_id": c.client_id, "client_secret": c.client_secret, "redirect_uris": list(c.redirect_uris)}
            for c in clients.values()
        ],
        "resource": resource,
        "resources": [resource, *also_for],
        "scopes": [*SCOPES, APPROVE_SCOPE],
    }
    log = workdir / f"oidc-provider-{port}.log"
    with log.open("wb") as out, tempfile.TemporaryFile() as given:
        given.write(json.dumps(config).encode())  # on stdin: the clients' secrets and the passwords stay out of `ps`
        given.seek(0)
        process = subprocess.Popen(
            [node, str(SCRIPT)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=given,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NODE_ENV": "test"},
        )
        try:
            issuer = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + START_DEADLINE_S
            while True:  # a process start has no event to wait on: poll its discovery document, with a deadline
                try:
                    if httpx2.get(f"{issuer}/.well-known/openid-configuration", timeout=1).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"the OpenID provider did not start: {log.read_text()}"
                time.sleep(0.05)
            yield Issuer(issuer=issuer, resource=resource, clients=clients, log=log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
