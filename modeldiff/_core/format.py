"""The text of a structural diff: one row per change, aligned columns, folded groups.

>>> from modeldiff._core.format import MARK
>>> MARK["added"], MARK["removed"], MARK["changed"]
('+', '-', '~')
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modeldiff._core.graph import Node, format_attrs, key_attrs

if TYPE_CHECKING:
    from modeldiff._core.diff import GraphDiff, ModuleChange

__all__ = ["MARK", "format_diff", "signature"]

MAX_CONFIG_LINES = 12  # in str(); to_json() lists every key
MARK = {"added": "+", "removed": "-", "changed": "~"}


def signature(n: Node) -> str:
    return f"{n.cls}({format_attrs(key_attrs(n.attrs))})"


def _change_detail(c: ModuleChange) -> str:
    bits: list[str] = [str(a) for a in c.attrs]
    bits += [str(t) for t in c.tensors]
    return "; ".join(bits)


def format_diff(d: GraphDiff, *, top: int | None = 20) -> str:
    """The +/-/~ tree; with weights, the ``top`` changed modules (``None``: all of them)."""
    head = f"{d.before.root.cls} -> {d.after.root.cls}  ({d.alignment.describe()})"
    rows: list[tuple[str, str, str, str]] = []
    for c in d.modules:
        node = c.node
        if c.change == "changed":
            rows.append((MARK[c.change], c.label, node.cls, _change_detail(c)))
        else:
            params = node.totals.params * c.count
            extra = f"{params:,} params" if params else ""
            if c.subtree > 1:
                extra = (extra + "  " if extra else "") + f"({c.subtree - 1} submodules)"
            rows.append((MARK[c.change], c.label, signature(node), extra))
    lines = [head]
    if rows:
        w_path = max(len(r[1]) for r in rows)
        w_sig = max(len(r[2]) for r in rows if r[0] != "~") if any(r[0] != "~" for r in rows) else 0
        w_num = max((len(r[3].split("  ")[0]) for r in rows if r[0] != "~" and r[3]), default=0)
        for mark, path, sig, extra in rows:
            if mark == "~":
                lines.append(f"{mark} {path:<{w_path}}  {sig}  {extra}".rstrip())
            else:
                num, _, rest = extra.partition("  ")
                if num.startswith("("):
                    num, rest = "", extra
                cell = f"{num:>{w_num}}" if num else ""
                line = f"{mark} {path:<{w_path}}  {sig:<{w_sig}}  {cell}"
                if rest:
                    line += "  " + rest
                lines.append(line.rstrip())
    for t in d.ties:
        lines.append(f"{MARK[t.change]} tie {t.target} -> {t.source}")
    shown = d.config if len(d.config) <= MAX_CONFIG_LINES else d.config[:MAX_CONFIG_LINES - 1]
    lines += [f"~ config {c}" for c in shown]
    if len(shown) < len(d.config):
        lines.append(f"~ config ... {len(d.config) - len(shown)} more keys differ (see to_json())")
    if d.drift:
        lines.append("drift (classes a library renamed; not counted as differences):")
        lines += [f"  {c.label}  {_change_detail(c)}" for c in d.drift]
    if d.weights is not None:
        lines.append(d.weights.table(top=top))
    if d.not_compared:
        lines.append(f"(not compared: {', '.join(d.not_compared)}: "
                     "one side does not record them)")
    if not d:
        lines.insert(1, "no differences" + (" in architecture" if d.drift else ""))
    return "\n".join(lines)
