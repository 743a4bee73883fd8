"""The one place provider strings are normalised, redacted and quoted.

Everything the provider sends is hostile until it has been through here:

- `normalise` runs once, at parse time, on every string the provider sends: a
  lone surrogate (a legal JSON escape that no encoder accepts) becomes U+FFFD, so
  nothing downstream can fail on encoding.
- `redact` removes the API token, and anything shaped like `Bearer <credential>`,
  from provider text before it is stored, quoted, logged or audited.
- `quoted` is the only way provider text enters prose (warnings, questions to the
  user, errors, prompts): JSON-quoted, with control characters, bidi overrides,
  line and paragraph separators and other format characters escaped, so a name
  can neither start a new line nor reorder what the user reads.
"""

from __future__ import annotations

import json
import re
import unicodedata

_SURROGATES = re.compile("[\ud800-\udfff]")
_BEARER = re.compile(r"(?i)\b(bearer|token|authorization)(\s*[:=]?\s*)([A-Za-z0-9._~+/=-]{8,})")
REDACTED = "[redacted]"


def normalise(text: str) -> str:
    """The same text with lone surrogates replaced by U+FFFD."""
    return _SURROGATES.sub("\ufffd", text)


def redact(text: str, *secrets: str) -> str:
    """`text` without the given secrets or any `Bearer <credential>`-shaped value."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def _escape(char: str) -> str:
    return f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else char.encode("unicode_escape").decode()


def _needs_escape(char: str) -> bool:
    # Cc: controls (incl. ESC), Cf: format (bidi overrides, zero-width), Zl/Zp: U+2028/U+2029, Cs/Co/Cn.
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")


def quoted(text: str | None) -> str:
    """Provider text as a JSON string literal that is safe to show inside prose."""
    body = json.dumps(normalise(text or ""), ensure_ascii=False)
    return "".join(_escape(c) if _needs_escape(c) else c for c in body)
