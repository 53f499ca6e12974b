"""The one place that makes host- or file-supplied text safe to show on a terminal.

VM and portgroup names, pktcap-uw's stderr, pcapng interface names and archive member names come from
places esxcap does not control: a terminal escape in one of them (a title change, a screen clear, an
OSC 52 clipboard write) must never reach the terminal raw. Every such string passes through
`printable()` before it is shown; the output module applies it to every message and table cell.
"""

from __future__ import annotations


def printable(text: str, keep_newlines: bool = False) -> str:
    """`text` with every control or format character (ESC, BEL, C1 controls, bidi overrides, ...)
    shown as a `\\xNN`/`\\uNNNN` escape; line breaks are kept when `keep_newlines` (esxcap's own
    multi-line messages), tabs always."""
    if text.isprintable():
        return text
    return "".join(_shown(ch, keep_newlines) for ch in text)


def _shown(ch: str, keep_newlines: bool) -> str:
    if ch.isprintable() or ch == "\t" or (keep_newlines and ch == "\n"):
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
