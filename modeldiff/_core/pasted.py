"""Find ``print(model)`` output inside text people paste: an issue comment, a notebook cell,
a log, a markdown file.

Prints arrive wrapped: a ``Model:`` line before them, a markdown fence around them,
``>>> print(model)`` and ``Out[3]:`` prompts, ``<br>`` line ends from an HTML page, notebook
output after them, several prints in one file. :func:`find_prints` returns each print with
the line range it came from and what was skipped, so the caller can say so.

>>> text = '''I get this model:
... ```
... >>> print(model)
... Sequential(
...   (0): Linear(in_features=4, out_features=2, bias=True)
... )
... ```
... and then the loss is NaN.'''
>>> [p.text for p in find_prints(text)]
['Sequential(\\n  (0): Linear(in_features=4, out_features=2, bias=True)\\n)']
>>> find_prints(text)[0].note
'lines 4-6 of the text; skipped 3 lines before and 2 after'
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

__all__ = ["Excerpt", "find_prints", "unwrap"]

# A print starts with a class name and "(" at the start of a line (after any prompt). Class
# names are capitalised (PEP 8, and every torch and transformers module): this keeps
# `print(model)` and `model.train()` lines from passing for prints.
_START = re.compile(r"[A-Z][\w.]*\(")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_PROMPT = re.compile(r"^(?:>>> |\.\.\. |>>>$|\.\.\.$|Out\[\d+\]:\s?|In \[\d+\]:\s?)")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True, slots=True)
class Excerpt:
    """One print found in a text: its text, 1-based ``first``/``last`` line numbers in the
    unwrapped text, and a note of what was skipped around it."""

    text: str
    first: int
    last: int
    note: str


def unwrap(text: str) -> str:
    """The text with HTML line breaks as newlines, HTML entities decoded (when the text
    came from a page), and interpreter prompts (``>>> ``, ``... ``, ``Out[3]:``) removed."""
    if _BR.search(text):
        text = html.unescape(_BR.sub("\n", text))
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(_PROMPT.sub("", line) for line in lines)


def find_prints(text: str) -> list[Excerpt]:
    """Every complete printed module in ``text``, in order.

    A print starts at a line that begins (after indentation and prompts) with
    ``ClassName(`` and ends at the parenthesis that closes it; a candidate that never
    closes is not a print. Linear in the text: each character is scanned once.
    """
    text = unwrap(text)
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    found: list[tuple[int, int]] = []
    n = len(text)
    li = 0
    while li < len(lines):
        line = lines[li]
        stripped = line.lstrip()
        if _FENCE.match(line) or not _START.match(stripped):
            li += 1
            continue
        begin = starts[li] + len(line) - len(stripped)
        end = _closing(text, begin + stripped.index("("), n)
        if end is None:
            li += 1
            continue
        found.append((begin, end))
        while li < len(lines) and starts[li] < end:
            li += 1
    out = []
    total = len(lines)
    for k, (begin, end) in enumerate(found):
        first = text.count("\n", 0, begin) + 1
        last = text.count("\n", 0, end) + 1
        before = len([x for x in lines[: first - 1] if x.strip()])
        after = len([x for x in lines[last:] if x.strip()]) if k == len(found) - 1 else 0
        parts = []
        if before:
            parts.append(f"{before} line{'s' * (before != 1)} before")
        if after:
            parts.append(f"{after} after")
        note = f"lines {first}-{last} of the text" if (first, last) != (1, total) else ""
        if parts:
            note += ("; " if note else "") + "skipped " + " and ".join(parts)
        out.append(Excerpt(text=text[begin:end].rstrip(), first=first, last=last, note=note))
    return out


def _closing(text: str, i: int, n: int) -> int | None:
    """The index after the ``)`` that closes the ``(`` at ``i``, skipping quoted strings;
    None when the text ends first or a line that cannot belong to a print interrupts."""
    depth = 0
    quote = ""
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote or ch == "\n":
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
            if depth < 0:
                return None
        elif ch == "\n" and _FENCE.match(text, i + 1):
            return None  # a fence closes the block before the print did
        i += 1
    return None
