"""Text from outside (file names, captions, EXIF, OCR, provider errors) made safe to show
to a person or to store: control characters escaped, secrets redacted."""

from __future__ import annotations

import logging
import unicodedata

_BIDI_CONTROLS = (
    frozenset("\u200e\u200f\u061c")
    | {chr(c) for c in range(0x202A, 0x202F)}
    | {chr(c) for c in range(0x2066, 0x206A)}
)
"""Characters that reorder what follows them on screen (a file name could hide its end)."""


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with control characters escaped (``\\x1b``, ``\\n`` ...), so that a file name
    cannot recolour the terminal, move the cursor or forge a line of output."""
    kept = "\n" if keep_newlines else ""
    return "".join(_escape(char) if _unsafe(char) and char not in kept else char for char in text)


_SECRETS: set[str] = set()
REDACTED = "[redacted]"


def register_secret(value: str | None) -> None:
    """Remember a configured secret (an API key) so that ``redact`` removes it from any
    error text before it is logged, stored in a manifest or shown: some providers echo the
    key back in a 401 body."""
    if value and len(value) >= 6:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


class RedactSecrets(logging.Filter):
    """A logging filter that redacts registered secrets from every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            record.msg = redact(record.getMessage())
            record.args = None
        return True


def format_time(seconds: float) -> str:
    """01:13 (or 1:02:03 past an hour)."""
    whole = int(max(0.0, seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def format_date(value: str) -> str:
    """A timestamp as people read it: ``14 Jun 2021, 13:02`` (with its zone when it has
    one: ``UTC``, ``UTC+02:00``); text that is no timestamp is returned as it is."""
    from datetime import datetime, timedelta

    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return value
    shown = f"{when.day} {when:%b %Y, %H:%M}"
    offset = when.utcoffset()
    if offset is None:
        return shown
    if offset == timedelta(0):
        return f"{shown} UTC"
    sign, offset = ("+", offset) if offset > timedelta(0) else ("-", -offset)
    hours, minutes = divmod(int(offset.total_seconds()) // 60, 60)
    return f"{shown} UTC{sign}{hours:02d}:{minutes:02d}"
