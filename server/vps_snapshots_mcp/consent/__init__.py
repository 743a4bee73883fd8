"""Consent for restore and delete, with no MCP import: the decision, the tokens, the words.

decision.py   what a call does (preview, ask the user, execute by token, refuse), decided once
settle.py     the decided call settled into one consent, spent in the ledger (`state/`) once
tokens.py     confirmation tokens: mint and verify, bound to target, caller and expiry
wording.py    every word of consent, fed by the provider's facts
"""

from __future__ import annotations

from typing import Literal

Action = Literal["restore", "delete"]
"""The changes that need the user's consent."""

TOKEN_TTL_S = 600
"""How long a consent lives: a confirmation token, and a sealed question round on 2026-07-28."""
