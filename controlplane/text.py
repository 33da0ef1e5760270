"""Which characters Ferry refuses in names and paths: the ones that can split a line.

A path or name is written into log lines, SFTP commands, S3 keys, CSV exports and
terminals. Every character that some reader takes as a line break or a control must be
refused, not only ASCII's: Unicode's category Cc (C0 U+0000-U+001F, DEL U+007F and C1
U+0080-U+009F, which holds NEL U+0085), Zl (LINE SEPARATOR U+2028) and Zp (PARAGRAPH
SEPARATOR U+2029). Lone surrogates (Cs) are refused too: they cannot be encoded at all.
``tests/controlplane/test_text.py`` checks this set against ``unicodedata`` for every code
point.
"""

from __future__ import annotations

import re

# Cc, Zl, Zp and Cs, written out: these ranges are fixed by the Unicode standard
# (stability policy: no new Cc, Zl or Zp characters are ever assigned).
CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def has_control(text: str) -> bool:
    """True when ``text`` holds a character of :data:`CONTROL_CHARS`."""
    return CONTROL_CHARS.search(text) is not None
