"""The one place provider strings are normalised, redacted and quoted.

Everything the provider sends is hostile until it has been through here:

- `decode_body` is the one way a provider body becomes text: UTF-8, strictly
  (RFC 8259), or refused (`NotJson`). Everything below judges the decoded text,
  so an answer in UTF-16 or UTF-32 cannot carry the token past a check on bytes.
- `parse_clean_json` parses that text, refusing what JSON has not (NaN, Infinity,
  a number too large for a float), and cleans every string in it.
- `normalise` runs once, at parse time, on every string the provider sends: a
  lone surrogate (a legal JSON escape that no encoder accepts) becomes U+FFFD, so
  nothing downstream can fail on encoding.
- `redact` removes the API token, and anything shaped like `Bearer <credential>`,
  from provider text before it is stored, quoted, logged or audited; also when
  they are percent-encoded (any case of hex digits, up to four times over).
- `quoted` is the only way provider text enters prose (warnings, questions to the
  user, errors, prompts): JSON-quoted, with control characters, bidi overrides,
  line and paragraph separators, other format characters and angle brackets
  escaped, so a name can neither start a new line, reorder what the user reads,
  nor pass for markup. The JSON text of every tool result gets the same escapes
  (`escape_unsafe`).
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import re
import unicodedata
from typing import Any
from urllib.parse import unquote

_SURROGATES = re.compile("[\ud800-\udfff]")
# `Bearer <credential>` in any case, with the credential as RFC 6750 spells it (b64token).
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)([A-Za-z0-9._~+/=-]+)")
REDACTED = "[redacted]"


def normalise(text: str) -> str:
    """The same text with lone surrogates replaced by U+FFFD."""
    return text if text.isascii() else _SURROGATES.sub("\ufffd", text)  # ASCII holds no surrogate


def redact(text: str, *secrets: str) -> str:
    """`text` without the given secrets or any `Bearer <credential>`-shaped value, plain or percent-encoded.

    A text that shows one only once percent-decoded is kept decoded (up to the
    layer that showed it), with the secret removed: `%74%6F...` cannot be
    redacted in place without knowing where each character came from.
    """
    text = _redact_plain(text, secrets)
    if "%" not in text:
        return text
    decoded = _redact_percent_encoded(text, secrets, _MAX_DECODINGS)
    # What decoding made of `%0A` and the like is encoded again: a log line cannot gain a new line by it.
    return text if decoded == text else _DECODED_CONTROLS.sub(_percent_encoded, decoded)


_DECODED_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _percent_encoded(match: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in match.group().encode())


_MAX_DECODINGS = 4
"""How many layers of percent-encoding are undone to look for a secret (`%2574` is two)."""


def _redact_plain(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return _BEARER.sub(_redacted_bearer, text) if "bearer" in text.lower() else text


def _reveals(text: str, secrets: tuple[str, ...]) -> bool:
    if any(secret and secret in text for secret in secrets):
        return True
    # A case-insensitive regex scans slowly (no literal prefix to skip to); lowering the text first is far faster.
    return "bearer" in text.lower() and _BEARER.search(text) is not None


def _redact_percent_encoded(text: str, secrets: tuple[str, ...], budget: int) -> str:
    layer = text
    for used in range(1, budget + 1):
        if "%" not in layer:
            return text
        decoded = unquote(layer)
        if decoded == layer:
            return text
        layer = decoded
        if _reveals(layer, secrets):
            return _redact_percent_encoded(_redact_plain(layer, secrets), secrets, budget - used)
    return text


def hides_encoded(text: str, *secrets: str) -> bool:
    """Whether percent-decoding `text` (up to `_MAX_DECODINGS` times) shows a secret or a bearer credential.

    Decoding is local (no escape spans a quote), so when a JSON text shows
    nothing, none of its strings can: one check spares walking the answer.
    """
    layer = text
    for _ in range(_MAX_DECODINGS):
        if "%" not in layer:
            return False
        decoded = unquote(layer)
        if decoded == layer:
            return False
        layer = decoded
        if _reveals(layer, secrets):
            return True
    return False


def clean(text: str, *secrets: str) -> str:
    """A provider string made safe to keep: normalised, then redacted."""
    return redact(normalise(text), *secrets)


def clean_json(data: Any, *secrets: str) -> Any:
    """Parsed provider JSON with every string in it (keys too) cleaned; numbers, booleans and null as they were."""
    keys: dict[str, str] = {}  # the same keys come back in every record: each is cleaned once per answer

    def key(name: str) -> str:
        found = keys.get(name)
        if found is None:
            found = keys[name] = clean(name, *secrets)
        return found

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return clean(node, *secrets)
        if isinstance(node, dict):
            return {key(str(name)): walk(value) for name, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(data)


class NotJson(ValueError):
    """A provider body this server does not read as JSON; `kind` says what it is instead, for the error."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


NOT_UTF8 = "text that is not UTF-8"
NOT_FINITE = "a number that is not finite (NaN, Infinity, or too large)"
MALFORMED = "malformed JSON"


def decode_body(body: bytes) -> str:
    """A provider body as text: strictly UTF-8, as RFC 8259 requires of JSON over HTTP. Raises NotJson.

    A leading byte order mark is dropped. A NUL is refused too: it is never in
    UTF-8 JSON or in a message meant to be read, and it is how UTF-16 and UTF-32
    text shows through a UTF-8 decoder (`B\\x00e\\x00a\\x00...`), which would
    carry the token past redaction letter by letter. Both checks run at C speed.
    """
    if body.startswith(codecs.BOM_UTF8):
        body = body[len(codecs.BOM_UTF8) :]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:  # UTF-16/32 with non-ASCII, Latin-1, an encoded surrogate
        raise NotJson(NOT_UTF8) from None
    if "\x00" in text:
        raise NotJson(NOT_UTF8)
    return text


def _not_finite(constant: str) -> Any:
    raise NotJson(NOT_FINITE)


def _finite(number: str) -> float:
    value = float(number)
    if math.isinf(value):  # 1e999: JSON allows the text, no float holds it
        raise NotJson(NOT_FINITE)
    return value


# NaN, Infinity and -Infinity are not JSON; Python's decoder accepts them unless told. The hooks cost nothing
# for integers and strings, and are called only for numbers with a fraction or an exponent.
_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_not_finite)


def parse_json_text(text: str) -> Any:
    """Decoded provider text parsed as strict JSON: no NaN, no Infinity, no overflow. Raises NotJson."""
    try:
        return _DECODER.decode(text)
    except NotJson:
        raise
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise NotJson(MALFORMED) from None


def parse_clean_json(body: bytes, *secrets: str) -> Any:
    """A provider answer's JSON, parsed from its bytes, with every string in it cleaned. Raises NotJson.

    The same as `clean_json(json.loads(decode_body(body)), ...)` (with strict numbers), without walking the
    answer when its text proves that there is nothing to clean: with no backslash in it, every string the
    JSON holds is a verbatim slice of the text, so no slice holds a secret or a bearer credential, plain or
    percent-encoded, that the whole text lacks; and strictly decoded UTF-8 holds no surrogate. The usual
    answer passes these checks at C speed, and a hundred records are not walked string by string.
    """
    text = decode_body(body)
    data = parse_json_text(text)
    if "\\" in text or _reveals(text, secrets) or ("%" in text and hides_encoded(text, *secrets)):
        return clean_json(data, *secrets)
    return data


def _redacted_bearer(match: re.Match[str]) -> str:
    return f"{match.group(1)}{match.group(2)}{REDACTED}"


def _escape(char: str) -> str:
    """The JSON escape of one character: `\\uXXXX`, or a surrogate pair of them above U+FFFF."""
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _needs_escape(char: str) -> bool:
    # Angle brackets: no fake markup (`</tool_result>`) even inside a string. Cc: controls (incl. ESC),
    # Cf: format (bidi overrides, zero-width), Zl/Zp: U+2028/U+2029, Cs/Co/Cn: surrogates, private, unassigned.
    return char in "<>" or (not char.isprintable() and unicodedata.category(char) in _UNSAFE_CATEGORIES)


_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
# Every character that may need an escape: angle brackets, controls but JSON's own whitespace (tab, newline,
# carriage return: inside strings an encoder has escaped them already), and all non-ASCII. The regex scans in C,
# so plain ASCII JSON costs almost nothing; each candidate is then judged by `_needs_escape`.
_CANDIDATES = re.compile("[^\t\n\r\x20-\x3b\x3d\x3f-\x7e]")  # negated: compiles at once, unlike a range to U+10FFFF


def _escape_if_unsafe(match: re.Match[str]) -> str:
    char = match.group()
    return _escape(char) if _needs_escape(char) else char


def quoted(text: str | None) -> str:
    """Provider text as a JSON string literal that is safe to show inside prose."""
    return escape_unsafe(json.dumps(normalise(text or ""), ensure_ascii=False))


def escape_unsafe(json_text: str) -> str:
    """JSON text with angle brackets and every control, format and separator character as `\\uXXXX` escapes.

    The JSON value is unchanged (outside strings, JSON has none of these but
    whitespace, which is kept; inside, an escape means the same), but nothing in
    it can move or hide text, or pass for markup.
    """
    return _CANDIDATES.sub(_escape_if_unsafe, json_text)


class RedactingFilter(logging.Filter):
    """Removes secrets, and anything shaped like `Bearer <credential>`, from every log record it passes."""

    def __init__(self, *secrets: str) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = clean(message, *self._secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if redact(str(exc), *self._secrets) != str(exc):
                # The traceback would print the secret: keep the exception's type only.
                record.msg, record.args = f"{cleaned} ({type(exc).__name__}; details withheld)", None
                record.exc_info, record.exc_text = None, None
        return True


def server_label(server_id: int | None, name: str | None) -> str:
    """`12345 "web-server-01"` for prose: the id, then the provider's name quoted as data."""
    if server_id is None:
        return "(unknown)"
    return f"{server_id} {quoted(name)}" if name else str(server_id)


def date_label(when: str | None) -> str:
    """A provider date for prose: quoted as data, or `an unknown date`."""
    return quoted(when) if when else "an unknown date"


_PLAIN_WORD = re.compile(r"[a-z][a-z_]{0,31}")


def plain_or_quoted(word: str) -> str:
    """A provider word such as a status (`completed`) as it is when it is a plain word, else quoted as data."""
    return word if _PLAIN_WORD.fullmatch(word) else quoted(word)
