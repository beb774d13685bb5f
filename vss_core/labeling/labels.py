"""What a label may be, and how user text is written into CSV cells.

One owner of "is this a valid label": :func:`validate_label`, called wherever a label comes in
(a folder name or CSV cell at load, a label typed in the app for a decision, a relabel, the CLI).
A label is refused, with a message naming it and saying why, when it is empty, longer than
:data:`MAX_LABEL_CHARS`, or holds the tag separator or another control character (a line break
from a quoted CSV cell, a tab).  256 characters (at most 1,024 UTF-8 bytes) lists, filters and
deletes on a real index; a tag value over about 4 KB no longer matches a filter (measured: 2,048
two-byte characters match, 2,500 do not), so it could be stored and never found again.

:func:`csv_cell` neutralises a text cell a spreadsheet would run as a formula (CSV injection).
"""

from __future__ import annotations

import re

from vss_core.errors import InputError
from vss_core.redis.schema import TAG_SEPARATOR

__all__ = ["MAX_LABEL_CHARS", "validate_label", "csv_cell"]

MAX_LABEL_CHARS = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def validate_label(label: str, where: str = "") -> str:
    """``label`` with surrounding spaces removed, or :class:`InputError` saying why it cannot be one.

    ``where`` names where it came from ("notes.csv line 4"), for the message."""
    text = label.strip() if isinstance(label, str) else ""
    at = f"{where}: " if where else ""
    if not text:
        raise InputError(f"{at}empty label")
    shown = text[:60] + ("…" if len(text) > 60 else "")
    if len(text) > MAX_LABEL_CHARS:
        raise InputError(f"{at}label {shown!r} is {len(text):,} characters long; "
                         f"a label may have at most {MAX_LABEL_CHARS}")
    if TAG_SEPARATOR in text:
        raise InputError(f"{at}label {shown!r} contains the index's tag separator (\\x1f), which would split it")
    found = _CONTROL.search(text)
    if found:
        kind = "a line break" if found.group() in "\r\n\u2028\u2029" else f"the control character {found.group()!r}"
        raise InputError(f"{at}label {shown!r} contains {kind}; labels are one line of text")
    return text


def csv_cell(value):
    """A CSV cell that no spreadsheet runs as a formula: text starting with ``= + - @``, a tab or a
    carriage return gets a leading ``'``; numbers (``-0.25``) and other values are kept as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value
