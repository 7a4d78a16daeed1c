"""What fine-tuning moved, as pictures and one HTML file people can open and share.

:func:`plot_weights` draws a :class:`~modeldiff._core.weights.WeightDiff` as a heatmap of
relative change (layers down, module types across) and a per-layer line, with matplotlib.
:func:`report` writes one self-contained HTML file: the verdict, the structural diagram with
the moved modules coloured, the load report where one side is a base, the plots, the top
changed modules and tables that fold and expand. Everything is inline (SVG, CSS, no
script, no network), so the file works offline, attached to an issue or a mail.

Why matplotlib: it is the plotting library every Python user already has or can install
from any mirror, it writes SVG and PNG without a browser or a JavaScript runtime, and its
SVG output is plain vector markup that can be inlined in HTML as is.

>>> import tempfile, torch
>>> from torch import nn
>>> torch.manual_seed(0) and None
>>> a = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2))
>>> b = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2))
>>> b.load_state_dict(a.state_dict())
<All keys matched successfully>
>>> with torch.no_grad():
...     _ = b[1].weight.mul_(1.1)
>>> out = report(a, b, path=tempfile.mkdtemp() + "/report.html")
>>> html = out.read_text()
>>> "<svg" in html and "full fine-tune" in html      # 1 of 2 modules moved
True
>>> import re
>>> re.search(r"(src|href)=.(https?:)?//", html) is None and "<script" not in html
True
"""

from __future__ import annotations

import html
import io
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modeldiff._core.diff import GraphDiff
from modeldiff._core.head_delta import head_delta_of
from modeldiff._core.weights import ModuleSummary, WeightDiff, fmt_stat, split_block
from modeldiff.errors import GraphvizNotFoundError, InputTypeError, InvalidArgumentError

__all__ = ["heatmap_data", "plot_weights", "report", "report_html"]


# -- plots ------------------------------------------------------------------------------------
def heatmap_data(wd: WeightDiff) -> tuple[list[str], list[str], list[list[float | None]]]:
    """(rows, columns, values): one row per numbered block (``encoder.layer.3``), one column
    per module type (``attention.self.query``), the relative change of that module (``0.0``
    when it did not move, ``None`` where the block has no such module).

    >>> from modeldiff._core.weights import TensorStats, make_weight_diff
    >>> t = TensorStats(name="layers.0.q.weight", shape_a=(2,), shape_b=(2,),
    ...                 dtype_a="float32", dtype_b="float32", numel=2, equal=True)
    >>> heatmap_data(make_weight_diff([t]))
    (['layers.0'], ['q'], [[0.0]])
    """
    cells: dict[tuple[str, int], dict[str, float]] = {}
    cols: list[str] = []
    for m in wd.modules:
        sb = split_block(m.path)
        if sb is None:
            continue
        lst, i, rest = sb
        rest = rest or "(block)"
        cells.setdefault((lst, i), {})[rest] = m.rel_change if m.changed else 0.0
        if rest not in cols:
            cols.append(rest)
    # module types in the order their tensors come inside a block (definition order)
    order: dict[str, int] = {}
    for t in wd.tensors:
        sb = split_block(t.name.rpartition(".")[0])
        if sb is not None:
            order.setdefault(sb[2] or "(block)", len(order))
    cols.sort(key=lambda c: order.get(c, len(order)))
    keys = sorted(cells)
    rows = [f"{lst}.{i}" for lst, i in keys]
    values = [[cells[k].get(c) for c in cols] for k in keys]
    return rows, cols, values


def plot_weights(wd: WeightDiff, path: str | os.PathLike[str] | None = None, *,
                 kind: str = "heatmap") -> str | Path:
    """Draw how much each module moved. ``kind="heatmap"``: relative change, layers down
    and module types across (log colour scale; white where nothing moved). ``kind="layers"``:
    one line, the relative change of each block. With ``path`` (``.svg`` or ``.png``) the
    picture is written there and the path returned; without, the SVG text is returned.

    Needs matplotlib (``pip install 'hf-modeldiff[report]'``).

    >>> import torch
    >>> from torch import nn
    >>> import modeldiff
    >>> a = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
    >>> b = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
    >>> b.load_state_dict(a.state_dict())
    <All keys matched successfully>
    >>> with torch.no_grad():
    ...     _ = b[2].weight.add_(0.1)
    >>> svg = plot_weights(modeldiff.weight_diff(a, b))
    >>> svg.startswith("<svg")
    True
    """
    if kind not in ("heatmap", "layers"):
        raise InvalidArgumentError("plot_weights(kind)", kind, "'heatmap' or 'layers'")
    if not isinstance(wd, WeightDiff):
        raise InputTypeError("plot_weights(wd)", wd, "a WeightDiff (from modeldiff.weight_diff)")
    fmt = "svg"
    if path is not None:
        fmt = Path(path).suffix.lower().lstrip(".")
        if fmt not in ("svg", "png"):
            raise InvalidArgumentError("plot_weights(path)", str(path),
                                       "a file name ending in .svg or .png")
    fig = _heatmap(wd) if kind == "heatmap" else _layers(wd)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=fmt, bbox_inches="tight",
                    metadata={"Date": None} if fmt == "svg" else None)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    if path is not None:
        from modeldiff._render import write_atomic

        write_atomic(Path(path), buf.getvalue())
        return Path(path)
    return _svg_element(buf.getvalue().decode())


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - the report extra is not installed
        from modeldiff.errors import ModelDiffError

        raise ModelDiffError("plotting weight changes needs matplotlib: "
                             "pip install 'hf-modeldiff[report]'") from e
    matplotlib.use("Agg", force=False)
    matplotlib.rcParams["svg.hashsalt"] = "modeldiff"  # the same SVG ids run to run
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: small and searchable
    import matplotlib.pyplot as plt

    return plt


def _heatmap(wd: WeightDiff) -> Any:
    plt = _pyplot()
    import numpy as np
    from matplotlib.colors import LogNorm

    rows, cols, values = heatmap_data(wd)
    fig_w = min(16.0, 2.5 + 0.55 * max(1, len(cols)))
    fig_h = min(18.0, 1.6 + 0.28 * max(1, len(rows)))
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    if not rows:
        ax.text(0.5, 0.5, "no numbered layers to lay out", ha="center", va="center")
        ax.set_axis_off()
        return fig
    arr = np.array([[math.nan if v is None or v <= 0 or not math.isfinite(v) else v
                     for v in row] for row in values], dtype=float)
    finite = arr[np.isfinite(arr)]
    cmap = plt.get_cmap("YlOrBr").with_extremes(bad="#FFFFFF")
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        # two decades at least: near-equal changes should look near-equal, not black/white
        norm = LogNorm(vmin=min(lo, hi / 100), vmax=hi)
        im = ax.imshow(np.ma.masked_invalid(arr), aspect="auto", cmap=cmap, norm=norm,
                       interpolation="nearest")
        fig.colorbar(im, ax=ax, label="relative change ||dW|| / ||W||", shrink=0.8)
    else:
        ax.imshow(np.zeros_like(arr), aspect="auto", cmap="Greys", vmin=0, vmax=1)
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_title("relative change by layer and module (white: unchanged)", fontsize=10)
    return fig


def _layers(wd: WeightDiff) -> Any:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 2.8))
    blocks = list(wd.blocks)
    if not blocks:
        ax.text(0.5, 0.5, "no numbered layers", ha="center", va="center")
        ax.set_axis_off()
        return fig
    ys = [m.rel_change if m.changed and math.isfinite(m.rel_change) else 0.0 for m in blocks]
    ax.plot(range(len(blocks)), ys, marker="o", color="#CC6600")
    ax.set_xticks(range(len(blocks)), [m.path for m in blocks], rotation=60, ha="right",
                  fontsize=8)
    if any(y > 0 for y in ys):
        ax.set_yscale("symlog", linthresh=max(min(y for y in ys if y > 0), 1e-12))
    ax.set_ylabel("relative change")
    ax.set_title("relative change per block", fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def _svg_element(text: str) -> str:
    """An SVG file's text without its XML prolog and DOCTYPE, ready to inline in HTML."""
    start = text.find("<svg")
    return text[start:] if start >= 0 else text


# -- the report -------------------------------------------------------------------------------
def report(a: Any, b: Any, *, path: str | os.PathLike[str] | None = None,
           task: Any = None, top: int = 20) -> Path | str:
    """Compare ``a`` and ``b`` (modules or checkpoint folders), structure and weights, and
    write one self-contained HTML report to ``path`` (returned); without ``path`` the HTML
    text is returned. See the module docstring for an example.
    """
    from modeldiff._compare import diff

    d = diff(a, b, weights=True, task=task)
    text = report_html(d, top=top, title=f"{_name(a)} -> {_name(b)}")
    if path is None:
        return text
    from modeldiff._render import write_atomic

    target = Path(path)
    write_atomic(target, text.encode())
    return target


def _name(x: Any) -> str:
    return str(x) if isinstance(x, (str, os.PathLike)) else type(x).__name__


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;
color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
header{border-left:6px solid #EC7014;background:#FFF7E6;padding:12px 16px;border-radius:4px}
header .pattern{font-weight:700} .muted{color:#666}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left} th{background:#f6f6f6}
details{margin:8px 0} summary{cursor:pointer;font-weight:600}
.figure{overflow:auto;border:1px solid #eee;padding:6px;margin:6px 0}
.figure svg{max-width:100%;height:auto}
pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}
"""


def report_html(d: GraphDiff, *, top: int = 20, title: str = "") -> str:
    """The HTML report of a diff computed with ``weights=True``."""
    wd = d.weights
    if wd is None:
        raise InvalidArgumentError("report_html(d)", d, "a diff computed with weights=True")
    v = wd.verdict
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>modeldiff report: {esc(title)}</title>",
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<style>{_CSS}</style></head><body>"]
    parts.append('<header id="verdict">')
    parts.append(f"<h1>modeldiff: <span class=\"pattern\">{esc(str(v.pattern) if v else '?')}"
                 f"</span></h1><div class=\"muted\">{esc(title)}</div>")
    if v is not None:
        parts.append("<ul>" + "".join(f"<li>{esc(e)}</li>" for e in v.evidence) + "</ul>")
        if v.frozen:
            parts.append(f"<p><b>Frozen</b> (not a single value moved): "
                         f"{esc(', '.join(v.frozen))}</p>")
    parts.append(f'<p class="muted">{esc(wd.summary())}</p></header>')

    parts.append('<section id="structure"><h2>Structure</h2>')
    parts.append(f"<pre>{esc(_structure_text(d))}</pre>")
    parts.append(f'<div class="figure" id="diagram">{_diagram(d)}</div></section>')

    load = _load_report(d)
    if load:
        parts.append('<section id="load-report"><h2>Load report (base -> head)</h2>'
                     f"<pre>{esc(load)}</pre></section>")

    parts.append('<section id="plots"><h2>Where the weights moved</h2>')
    try:
        parts.append(f'<div class="figure" id="heatmap">{plot_weights(wd, kind="heatmap")}</div>')
        parts.append(f'<div class="figure" id="layers">{plot_weights(wd, kind="layers")}</div>')
    except ImportError as e:  # pragma: no cover - matplotlib missing
        parts.append(f"<p>plots need matplotlib: {esc(str(e))}</p>")
    parts.append("</section>")

    moved = [m for m in wd.modules if m.changed]
    parts.append('<section id="top-modules"><h2>Top changed modules</h2>')
    parts.append(_table(moved[:top], "module") if moved else "<p>No module moved.</p>")
    if len(moved) > top:
        parts.append(_details(f"All {len(moved)} changed modules", _table(moved, "module")))
    folded = [m for m in wd.folded if m.changed]
    if folded:
        parts.append(_details(f"Repeated layers folded ({len(folded)} rows)",
                              _table(folded, "modules")))
    if wd.blocks:
        parts.append(_details(f"Per block ({len(wd.blocks)})", _table(list(wd.blocks), "block")))
    unchanged = [m for m in wd.modules if not m.changed]
    if unchanged:
        parts.append(_details(f"Unchanged modules ({len(unchanged)})", "<ul>" + "".join(
            f"<li>{esc(m.path or '(root)')}</li>" for m in unchanged) + "</ul>"))
    parts.append(_details(f"Every tensor ({len(wd.tensors)})", _tensor_table(wd)))
    parts.append("</section></body></html>")
    return "\n".join(parts) + "\n"


def _structure_text(d: GraphDiff) -> str:
    from dataclasses import replace

    from modeldiff._core.format import format_diff

    return format_diff(replace(d, weights=None))


def _diagram(d: GraphDiff) -> str:
    from modeldiff._render import pipe, render

    try:
        svg = pipe(render(d), "svg").decode()
    except GraphvizNotFoundError as e:
        return f"<p>{html.escape(str(e))}</p>"
    svg = _svg_element(svg)
    # Graphviz's SVG carries a <title> per node and an xlink namespace; no external link.
    return re.sub(r"<!--.*?-->", "", svg, flags=re.S)


def _load_report(d: GraphDiff) -> str:
    """What from_pretrained would report when one side is the other's base model."""
    al = d.alignment
    try:
        if al.after and not al.before:
            return str(head_delta_of(d.before, d.after, al.after))
        if al.before and not al.after:
            return str(head_delta_of(d.after, d.before, al.before))
    except Exception as e:
        return f"(no load report: {e})"
    return ""


def _details(summary: str, body: str) -> str:
    return f"<details><summary>{html.escape(summary)}</summary>{body}</details>"


def _table(rows: Sequence[ModuleSummary], first: str) -> str:
    head = (f"<tr><th>{first}</th><th>changed</th><th>rel change</th><th>max |b-a|</th>"
            "<th>cosine</th><th>rank</th></tr>")
    body = "".join(
        f"<tr><td>{html.escape(m.label)}</td><td>{m.changed}/{m.tensors}"
        f"{f' +{m.cast} cast' if m.cast else ''}</td><td>{fmt_stat(m.rel_change)}</td>"
        f"<td>{fmt_stat(m.max_abs)}</td><td>{fmt_stat(m.cosine, cos=True)}</td>"
        f"<td>{html.escape(m.rank_text)}</td></tr>" for m in rows)
    return f"<table>{head}{body}</table>"


def _tensor_table(wd: WeightDiff) -> str:
    head = ("<tr><th>tensor</th><th>shape</th><th>dtype</th><th>changed</th><th>rel change"
            "</th><th>cosine</th><th>rank</th><th>top-8 energy</th><th>note</th></tr>")
    rows = []
    for s in wd.tensors:
        changed = ("identical" if s.equal else "cast" if s.rounding else
                   f"{s.n_changed:,}/{s.numel:,}" if s.n_changed is not None else "differs")
        dtype = s.dtype_b if s.dtype_a == s.dtype_b else f"{s.dtype_a} -> {s.dtype_b}"
        rows.append(
            f"<tr><td>{html.escape(s.name)}</td><td>{'x'.join(map(str, s.shape_b))}</td>"
            f"<td>{dtype}</td><td>{changed}</td><td>{fmt_stat(s.rel_change)}</td>"
            f"<td>{fmt_stat(s.cosine, cos=True)}</td><td>{s.rank_text()}</td>"
            f"<td>{fmt_stat(s.top_energy)}</td><td>{html.escape(s.note)}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"
