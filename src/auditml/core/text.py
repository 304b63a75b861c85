"""Text from the log made safe to show: control characters escaped, long fields capped.

Model names, reasons, actor ids and paths come from users. Printed raw, an ESC
starts a terminal escape sequence (recolour, retitle, rewrite the screen) and a
NUL ends a C string; in a document one long unbroken field can stall a PDF
renderer. The CLI's consoles and the document templates pass all such text here.
"""

from __future__ import annotations

import re

__all__ = ["escape_controls", "needs_escape"]

# C0 controls except tab and newline, DEL, and the C1 controls (0x80-0x9f: CSI,
# OSC and the like, which some terminals obey even in UTF-8).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def needs_escape(text: str) -> bool:
    """Return whether ``text`` holds a control character :func:`escape_controls` rewrites."""
    return _CONTROLS.search(text) is not None


def escape_controls(text: str) -> str:
    r"""Return ``text`` with each control character written as ``\uXXXX``; tab and newline stay.

    The ``\uXXXX`` form is also a JSON string escape of the same character, so
    escaping JSON text keeps it valid and means the same.
    """
    return _CONTROLS.sub(_escaped, text)
