"""Once per call: the consent decision is made once, and the confirmation token verified once.

A real server, in process, with a real client that can ask its user. The token
machinery is the real one; only its `verify` and the decision's `decide` are
counted (wrapped, not replaced), per `tools/call` request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import pytest
from mcp.client.context import ClientRequestContext
from mcp_types import ElicitRequestParams, ElicitResult, InputRequiredResult

from vps_snapshots_mcp.consent import decision as decision_module
from vps_snapshots_mcp.consent.tokens import ConfirmationTokens, VerifiedToken
from vps_snapshots_mcp.simulator import ProviderState

from .support.mcp_client import connected, preview_token
from .support.world import ServerFactory

pytestmark = pytest.mark.anyio


class Counts:
    def __init__(self) -> None:
        self.verified = 0
        self.decided = 0


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Counts:
    counted = Counts()
    verify = ConfirmationTokens.verify
    decide = decision_module.decide

    def counting_verify(self: ConfirmationTokens, *args: Any, **kwargs: Any) -> VerifiedToken:
        counted.verified += 1
        return verify(self, *args, **kwargs)

    def counting_decide(**kwargs: Any) -> decision_module.Step:
        counted.decided += 1
        return decide(**kwargs)

    monkeypatch.setattr(ConfirmationTokens, "verify", counting_verify)
    monkeypatch.setattr(decision_module, "decide", counting_decide)
    return counted


def answering(action: Literal["accept", "decline", "cancel"], content: dict[str, Any] | None) -> Callable[..., Any]:
    async def user(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action=action, content=content)

    return user


@pytest.mark.parametrize(("action", "content"), [("accept", {"confirm": True}), ("decline", None)])
async def test_on_2025_11_25_the_ask_the_user_path_verifies_the_token_once(
    make_server: ServerFactory,
    provider: ProviderState,
    counts: Counts,
    action: Literal["accept", "decline"],
    content: dict[str, Any] | None,
) -> None:
    async with connected(make_server(), mode="legacy", elicit=answering(action, content)) as client:
        token = await preview_token(client, "delete_snapshot", 798)
        counts.verified = counts.decided = 0
        result = await client.call_tool(
            "delete_snapshot", {"snapshot_id": 798, "confirm": True, "confirmation_token": token}
        )
    assert result.structured_content is not None
    assert result.structured_content["status"] == ("deleted" if action == "accept" else "cancelled")
    assert (counts.verified, counts.decided) == (1, 1)


async def test_on_2026_07_28_each_round_verifies_the_token_once(
    make_server: ServerFactory, provider: ProviderState, counts: Counts
) -> None:
    async with connected(make_server(), elicit=answering("accept", {"confirm": True})) as client:
        token = await preview_token(client, "restore_snapshot", 801)
        arguments = {"snapshot_id": 801, "confirm": True, "confirmation_token": token}
        counts.verified = counts.decided = 0
        first = await client.session.call_tool("restore_snapshot", arguments, allow_input_required=True)
        assert isinstance(first, InputRequiredResult) and first.input_requests and first.request_state
        assert (counts.verified, counts.decided) == (1, 1)  # the token is checked before the user is asked
        responses: dict[str, Any] = {
            key: ElicitResult(action="accept", content={"confirm": True}) for key in first.input_requests
        }
        done = await client.call_tool(
            "restore_snapshot", arguments, input_responses=responses, request_state=first.request_state
        )
    assert done.structured_content is not None and done.structured_content["status"] == "restore_started"
    assert (counts.verified, counts.decided) == (2, 2)
    assert [r.path for r in provider.mutations] == ["/api/v1/snapshots/801/restore/"]


async def test_in_token_mode_the_token_is_verified_once(
    make_server: ServerFactory, provider: ProviderState, counts: Counts
) -> None:
    async with connected(make_server(consent="token"), mode="legacy") as client:
        token = await preview_token(client, "delete_snapshot", 798)
        counts.verified = counts.decided = 0
        result = await client.call_tool(
            "delete_snapshot", {"snapshot_id": 798, "confirm": True, "confirmation_token": token}
        )
    assert result.structured_content is not None and result.structured_content["status"] == "deleted"
    assert (counts.verified, counts.decided) == (1, 1)
