"""User text is data, never markup.

Streamlit renders ``st.markdown``, captions, alerts (error, warning, info, success), toasts, button
and expander labels and image captions as Markdown with its own directives: a label like
``![x](http://host/beacon.png)`` would make every viewer's browser fetch a remote image, and
``:red[...]`` or a backtick would change what the page says.  Text that comes from users or data
(labels, annotator names, file names, REST upload names, job labels and messages, error messages
that quote them) goes through :func:`md` before it is placed in any such element; tables
(``st.dataframe``) and select options show text as it is and need nothing.
"""

from __future__ import annotations

import re

# what Markdown and Streamlit read as markup anywhere: backslash, code, emphasis, links and images,
# HTML and autolinks, math, strikethrough, tables, entities; "_" at a word's edge; "://" (URL autolinks)
_MARKUP = re.compile(r"[\\`*\[\]<>$~|&]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])|:(?=//)")
_BLOCK = re.compile(r"^(\s*)(?:([#>+=-])|(\d+)([.)]))")  # headings, quotes, lists, rules at the start
_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")


def md(text: object) -> str:
    """``text`` as Markdown that shows it literally (line breaks as spaces).

    Every character Markdown or Streamlit could read as markup is backslash-escaped (CommonMark's
    escapes); file-name characters that cannot start markup (``.``, ``-`` inside, ``_`` inside a
    word, parentheses) are left as they are, so names read the same in the page source."""
    escaped = _MARKUP.sub(lambda m: "\\" + m.group(), _BREAKS.sub(" ", str(text)))
    return _BLOCK.sub(lambda m: m.group(1) + (f"\\{m.group(2)}" if m.group(2) else f"{m.group(3)}\\{m.group(4)}"),
                      escaped, count=1)


__all__ = ["md"]
