"""Printed ``print(model)`` text -> :class:`~modeldiff._core.graph.ModelGraph`.

People share models as the text ``print(model)`` shows: in issues, notebooks, chat. That text
holds the module tree, the class names and each module's ``extra_repr()``; from it
:func:`parse_repr` builds the same typed graph :func:`modeldiff.walk` builds from a live
model, as far as the text tells:

>>> text = '''Net(
...   (embed): Embedding(100, 8)
...   (layers): ModuleList(
...     (0-1): 2 x Linear(in_features=8, out_features=8, bias=True)
...   )
...   (head): Linear(in_features=8, out_features=2, bias=False)
... )'''
>>> g = parse_repr(text)
>>> [n.path for n in g]
['', 'embed', 'layers', 'layers.0', 'layers.1', 'head']
>>> g["head"].attributes["bias"], g["head"].params[0].shape
(False, (2, 8))
>>> g.repeats[0].label, g.totals.params
('layers.0-1', 960)

The same text with its newlines and indentation collapsed (as it often gets pasted) reads the
same, because the parser follows parentheses, not lines:

>>> parse_repr(" ".join(text.split())) == g
True

What the text cannot tell stays unknown: dtypes and devices (``"unknown"``), buffers, tied
weights (a tied weight prints as two modules), qualified class names (the printed name is
used), and the parameters of modules whose shapes do not follow from their attributes (see
:func:`modeldiff.kinds.tensor_shapes`). Parameters that do follow are marked
``derived=True``; totals count them, their bytes as if float32 (``Tensor.nbytes``'s rule
for unknown dtypes).

This module never imports torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from modeldiff import limits
from modeldiff._core.graph import (
    Kind,
    ModelGraph,
    Node,
    RepeatGroup,
    Tensor,
    Totals,
    recursion_room,
    repeat_groups,
)
from modeldiff._core.pasted import find_prints
from modeldiff.errors import InputTypeError, ReprParseError
from modeldiff.kinds import lookup, parse_attrs, tensor_shapes

__all__ = ["looks_like_repr", "parse_repr"]

SOURCE = "printed text (print(model))"

# A class name as ``Module._get_name()`` prints it.
_NAME = re.compile(r"[^\W\d]\w*")
# A child line: "(key): " and, for ModuleList's folded runs, "(0-5): 6 x ". Keys are
# module names: never empty, never holding whitespace or parentheses.
_CHILD = re.compile(r"\(([^()\s]+)\):\s*(?:([0-9]+) x\s+)?")
_FOLD_KEY = re.compile(r"([0-9]+)-([0-9]+)\Z")
# Numbers in keys and counts longer than this cannot be module counts (and past Python's
# int-string limit int() would raise): they are refused with a ReprParseError.
_MAX_DIGITS = 18
# Text print(model) never writes: NUL and other C0 controls (tab, newline, carriage return
# aside), and lone surrogates (not encodable, so not from a real print).
_BINARY = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
_WS = re.compile(r"\s*")
_NONE = re.compile(r"None(?![\w(])")
# The lookbehind keeps search() linear: without it a 300 KB word is retried from each of
# its characters.
_CALLED = re.compile(r"(?<!\w)([^\W\d]\w*)\(")
# ParameterList / ParameterDict print their entries like children, in their extra_repr.
_NOT_CHILDREN = ("Parameter containing:", "Object of type:")
_SPECIAL = re.compile(r"[()\[\]{}'\"]")
_STRING_STOP = {q: re.compile(rf"[{q}\\\n]") for q in "'\""}
_LOOKS = re.compile(r"\s*[^\W\d]\w*\((?s:.*)\)\s*\Z")
# A quote opens a string only where a Python value can start; elsewhere ("don't") it is text.
_VALUE_START = frozenset(" \t\r\n=([{,:")
# A PreTrainedModel's class name (walk knows it from the class; print shows only the name).
_MODEL_NAME = re.compile(r"(Model|For[A-Z]\w*)\Z")

_EMBEDDING_NAME = re.compile(r"Embedding$")
_EMBEDDING_KEYS = frozenset(("num_embeddings", "embedding_dim", "padding_idx", "max_norm",
                             "norm_type", "scale_grad_by_freq", "sparse"))



@dataclass(slots=True)
class _Raw:
    """One printed module before expansion: ``children`` holds (key, fold count or None,
    module or None for a ``(key): None`` child, offset of the key)."""

    cls: str
    extra: str
    pos: int
    children: list[tuple[str, int | None, _Raw | None, int]] = field(default_factory=list)
    size: int = 1  # modules in the expanded subtree


def looks_like_repr(text: str) -> bool:
    """Whether ``text`` has the shape of ``print(model)`` output: a class name, ``(``, and a
    closing ``)`` at the end. A cheap test, not a parse: :func:`parse_repr` decides.

    >>> looks_like_repr("DistilBertModel(\\n  (embeddings): Embeddings(...)\\n)")
    True
    >>> looks_like_repr("distilbert"), looks_like_repr("./checkpoints/run(1)")
    (False, False)
    """
    return isinstance(text, str) and _LOOKS.match(text) is not None


def parse_repr(text: str) -> ModelGraph:
    """The graph of a model from its printed text (``print(model)``, ``repr(model)``).

    Reads the text as torch prints it, or with all whitespace collapsed to single spaces;
    expands ModuleList's ``(0-5): 6 x Block(...)`` into six modules. Raises
    :class:`~modeldiff.errors.ReprParseError` (with 1-based ``line``, ``column`` and an
    ``excerpt``) for text that is not a complete printed module.

    >>> g = parse_repr("Sequential( (0): Linear(in_features=4, out_features=8, bias=True) "
    ...                "(1): ReLU() )")
    >>> [(n.path, n.cls, str(n.kind)) for n in g]
    [('', 'Sequential', 'container'), ('0', 'Linear', 'linear'), ('1', 'ReLU', 'activation')]
    >>> g["0"].params[0]
    Tensor(name='weight', shape=(8, 4), dtype='unknown', device='unknown', ..., derived=True)
    >>> parse_repr("Sequential(\\n  (0): Linear(in_features=4")
    Traceback (most recent call last):
    ...
    modeldiff.errors.ReprParseError: text ends before 'Linear(' (line 2, column 8) is closed \
at line 2, column 28: '(0): Linear(in_features=4'
    """
    if not isinstance(text, str):
        raise InputTypeError("parse_repr(text)", text, "the text print(model) shows (a str)")
    if len(text) > limits.MAX_PRINTED_BYTES:
        raise ReprParseError(f"printed text of {len(text):,} characters is over the limit "
                             f"({limits.hint('MAX_PRINTED_BYTES')})", line=1, column=1,
                             excerpt=text[:60])
    parser = _Parser(text)
    bad = _BINARY.search(text)
    if bad is not None:
        raise parser.error(bad.start(), f"the text holds the control character "
                                        f"{bad.group()!r}, which print(model) never writes "
                                        "(binary data, or a file read with the wrong encoding)")
    # The parser and builder recurse once per nesting level, capped by MAX_PRINTED_DEPTH;
    # room for that cap is made here, so raising the limit never ends in RecursionError.
    with recursion_room(limits.MAX_PRINTED_DEPTH):
        try:
            root = parser.parse()
        except ReprParseError as e:
            # Text pasted around a print (a "Model:" line, a markdown fence, prompts, <br>
            # line ends, notebook output, several prints): read the first print, say so.
            prints = find_prints(text)
            if not prints or prints[0].text == text.strip():
                raise
            first = prints[0]
            try:
                parser = _Parser(first.text)
                root = parser.parse()
            except ReprParseError:
                raise e from None
            note = first.note
            if len(prints) > 1:
                more = ", ".join(str(p.first) for p in prints[1:])
                note += (f"; {len(prints) - 1} more print(s) in the text (line {more}) not "
                         "read: pass one print at a time")
            graph = _Builder(parser).build(root)
            return replace(graph, source=f"{SOURCE}, {note}" if note else SOURCE)
        return _Builder(parser).build(root)


class _Parser:
    """Recursive descent over the text, by parentheses, never by lines: the grammar is

    module   := NAME "(" extra child* ")"
    child    := "(" KEY "):" [COUNT " x"] (module | "None")

    where ``extra`` (the module's ``extra_repr()``) runs to the first child or to the
    parenthesis that closes the module, skipping balanced brackets and quoted strings.
    """

    def __init__(self, text: str) -> None:
        self.text = text

    def parse(self) -> _Raw:
        text = self.text
        i = _skip_ws(text, 0)
        if i >= len(text):
            raise self.error(i, "empty text: expected printed model text such as "
                                "'Linear(in_features=4, out_features=2, bias=True)'")
        root, end = self.module(i, 0)
        end = _skip_ws(text, end)
        if end < len(text):
            raise self.error(end, f"unexpected text after the closing ')' of {root.cls!r}; "
                                  "pass the output of one print(model)")
        if root.size > limits.MAX_PRINTED_MODULES:
            raise self.error(i, f"the text expands to {root.size:,} modules (more than "
                                f"{limits.MAX_PRINTED_MODULES:,}); check the '(a-b): n x' "
                                f"counts ({limits.hint('MAX_PRINTED_MODULES')})")
        return root

    # -- the grammar --------------------------------------------------------------------
    def module(self, i: int, depth: int) -> tuple[_Raw, int]:
        text = self.text
        if depth > limits.MAX_PRINTED_DEPTH:
            raise self.error(i, f"modules nested more than {limits.MAX_PRINTED_DEPTH} deep "
                                f"({limits.hint('MAX_PRINTED_DEPTH')})")
        m = _NAME.match(text, i)
        if m is None:
            raise self.error(i, "expected a module's class name, as in 'Linear(...)'")
        name, body = m.group(), m.end() + 1
        if m.end() >= len(text) or text[m.end()] != "(":
            raise self.error(m.end(), f"expected '(' right after the class name {name!r}")
        end = self.scan(body, body)
        if end >= len(text):
            raise self.unclosed(name, i)
        node = _Raw(cls=name, extra=self.extra(body, end, i), pos=i)
        j = end
        while True:
            j = _skip_ws(text, j)
            if j >= len(text):
                raise self.unclosed(name, i)
            if text[j] == ")":
                return node, j + 1
            hit = self.child_at(j)
            if hit is None:
                raise self.error(j, f"expected a child '(name): Module(...)' or the ')' that "
                                    f"closes {name!r}")
            key, count, k = hit
            if _too_long_number(key):
                raise self.error(j, f"the child name {key[:40]!r}... is a number of more than "
                                    f"{_MAX_DIGITS} digits; no module holds that many children")
            if count is not None:
                a, b = (int(x) for x in _FOLD_KEY.match(key).groups())  # type: ignore[union-attr]
                if count < 2 or b - a + 1 != count:
                    raise self.error(j, f"'({key}): {count} x' does not add up: a folded run "
                                        f"{key} holds {b - a + 1} modules")
            child: _Raw | None
            if _NONE.match(text, k):
                child, after = None, k + 4
            elif _is_module_start(text, k):
                child, after = self.module(k, depth + 1)
            else:
                child, after = self.opaque(k, key)
            node.children.append((key, count, child, j))
            j = after
            if child is not None:
                node.size += child.size * (count or 1)
                if node.size > limits.MAX_PRINTED_MODULES:
                    raise self.error(k, f"the text expands to more than "
                                        f"{limits.MAX_PRINTED_MODULES:,} modules; check the "
                                        "'(a-b): n x' counts "
                                        f"({limits.hint('MAX_PRINTED_MODULES')})")

    def opaque(self, k: int, key: str) -> tuple[_Raw, int]:
        """A child whose class overrides ``__repr__`` with text of its own, as transformers'
        I-BERT ``(QuantLinear() weight_bit=8, quant_mode=False)``: it runs to the next child
        or to its parent's ')'. Its class is the first name followed by '(' (else the first
        name); its attributes are unknown, as they are to walk (no ``extra_repr``)."""
        text = self.text
        end = self.scan(k, k)
        m = _CALLED.search(text, k, end) or _NAME.search(text, k, end)
        if m is None:
            raise self.error(k, f"cannot read the module printed for child {key!r}: expected "
                                "a class name, as in 'Linear(...)'")
        return _Raw(cls=m.group(1) if m.re is _CALLED else m.group(), extra="", pos=k), end

    def child_at(self, j: int) -> tuple[str, int | None, int] | None:
        """(key, fold count, offset of what the child prints) if a child starts at ``j``."""
        text = self.text
        m = _CHILD.match(text, j)
        if m is None:
            return None
        key, count, k = m.group(1), m.group(2), m.end()
        if k >= len(text) or text.startswith(_NOT_CHILDREN, k):
            return None
        if count is not None:
            # torch folds runs of equal module reprs only; "(0-5): 6 x" is followed by one
            if _FOLD_KEY.match(key) is None or not _is_module_start(text, k):
                return None
            if len(count) > _MAX_DIGITS:
                raise self.error(j, f"the repeat count {count[:40]}... has more than "
                                    f"{_MAX_DIGITS} digits; check the '(a-b): n x' counts")
            return key, int(count), k
        return key, None, k

    def scan(self, start: int, body: int) -> int:
        """Where the free text (extra_repr, or an opaque child) that starts at ``start``
        ends: at the next child or at the ')' that closes the enclosing module."""
        text = self.text
        depth = 0
        j = start
        while True:
            m = _SPECIAL.search(text, j)
            if m is None:
                return len(text)
            j = m.start()
            c = text[j]
            if c == "(":
                if depth == 0 and (j == body or text[j - 1].isspace()) and self.child_at(j):
                    return j
                depth += 1
            elif c in ")]}":
                # Brackets count as one kind so that interval notation "[0, 1)" balances;
                # a stray closer at the top level is text, except ')' which closes the module.
                if depth == 0:
                    if c == ")":
                        return j
                else:
                    depth -= 1
            elif c in "[{":
                depth += 1
            elif j == start or text[j - 1] in _VALUE_START:
                close = self.string_end(j)
                if close is not None:
                    j = close
                    continue
            j += 1

    def string_end(self, j: int) -> int | None:
        """The offset after the quoted string opening at ``j``; None if it never closes
        on its line (then the quote is plain text)."""
        text, quote = self.text, self.text[j]
        stop = _STRING_STOP[quote]
        k = j + 1
        while True:
            m = stop.search(text, k)
            if m is None or m.group() == "\n":
                return None
            if m.group() == "\\":
                k = m.end() + 1
                continue
            return m.end()

    def extra(self, body: int, end: int, start: int) -> str:
        """The module's extra_repr() text. Printed on its own lines, each line carries the
        indentation of the module's body, which is taken off again."""
        raw = self.text[body:end]
        if "\n" not in raw:
            return raw.strip()
        indent = " " * (_indent_of(self.text, start) + 2)
        first, *rest = raw.split("\n")
        if rest and not rest[-1].strip():
            rest.pop()
        lines = [first.strip()] if first.strip() else []
        lines.extend(ln[len(indent):] if ln.startswith(indent) else ln.lstrip(" ")
                     for ln in rest)
        return "\n".join(lines).strip()

    # -- errors -------------------------------------------------------------------------
    def unclosed(self, name: str, start: int) -> ReprParseError:
        line, col = _line_col(self.text, start)
        return self.error(len(self.text), f"text ends before {name + '('!r} (line {line}, "
                                          f"column {col}) is closed")

    def error(self, pos: int, message: str) -> ReprParseError:
        text = self.text
        pos = max(0, min(pos, len(text)))
        line, col = _line_col(text, pos)
        line_start = text.rfind("\n", 0, pos) + 1
        line_end = text.find("\n", pos)
        if line_end < 0:
            line_end = len(text)
        lo, hi = max(line_start, pos - 30), min(line_end, pos + 30)
        return ReprParseError(message, line=line, column=col, excerpt=text[lo:hi].strip())


class _Builder:
    """Expanded modules -> nodes, in the order ``named_modules()`` gives (pre-order), with
    repeat groups by walk's rule: consecutive numbered siblings with identical subtrees."""

    def __init__(self, parser: _Parser) -> None:
        self.parser = parser
        self.nodes: list[Node | None] = []
        self.contains: list[tuple[str, str, str]] = []
        self.repeats: list[RepeatGroup] = []
        self.signatures: dict[tuple[object, ...], int] = {}

    def build(self, root: _Raw) -> ModelGraph:
        self.visit(root, "")
        order = {n.path: i for i, n in enumerate(self.nodes) if n is not None}
        self.repeats.sort(key=lambda r: order[r.paths[0]])
        return ModelGraph(nodes=tuple(n for n in self.nodes if n is not None),
                          contains=tuple(self.contains), repeats=tuple(self.repeats),
                          source=SOURCE)

    def visit(self, raw: _Raw, path: str) -> tuple[int, Totals]:
        slot = len(self.nodes)
        self.nodes.append(None)
        has_children = bool(raw.children)
        spec = lookup(raw.cls, has_children=has_children,
                      is_model=_MODEL_NAME.search(raw.cls) is not None)
        attrs = parse_attrs(spec, raw.extra)
        if not has_children and not spec.registered and spec.kind is not Kind.EMBEDDING \
                and _EMBEDDING_NAME.search(raw.cls):
            # Print shows no base classes; walk finds nn.Embedding in the MRO of, say,
            # RoFormerSinusoidalPositionalEmbedding, whose name alone reads as a table-less
            # position encoding. nn.Embedding's own extra_repr ("128, 8") tells them apart.
            embedding = lookup("Embedding")
            as_embedding = parse_attrs(embedding, raw.extra)
            if _valid(tensor_shapes(embedding, as_embedding)) and \
                    _EMBEDDING_KEYS.issuperset(k for k, _ in as_embedding):
                spec, attrs = embedding, as_embedding
        tensors = tuple(Tensor(name=name, shape=shape, dtype="unknown", device="unknown",
                               derived=True)
                        for name, shape in _valid(tensor_shapes(spec, attrs)))
        totals = Totals()
        for t in tensors:
            totals += Totals(params=t.numel, trainable=t.numel, bytes=t.nbytes)
        pre = f"{path}." if path else ""
        names: list[str] = []
        seen: set[str] = set()
        kid_sigs: list[int] = []
        numbered: list[tuple[str, int, str]] = []
        for key, count, child, pos in raw.children:
            if count is None:
                keys: list[str] | range = [key]
            else:
                first = int(key.partition("-")[0])
                keys = range(first, first + count)
            for k in keys:
                name = str(k)
                if name in seen:
                    raise self.parser.error(pos, f"{raw.cls} has two children named {name!r}")
                seen.add(name)
                names.append(name)
                if child is None:  # "(name): None": a registered slot holding no module
                    continue
                cpath = pre + name
                self.contains.append((path, name, cpath))
                cslot = len(self.nodes)
                sig, sub = self.visit(child, cpath)
                kid_sigs.append(sig)
                totals += sub
                if name.isdecimal():
                    numbered_node = self.nodes[cslot]
                    assert numbered_node is not None
                    numbered.append((cpath, sig, numbered_node.cls))
        sig_key = (raw.cls, attrs, tensors, tuple(names), tuple(kid_sigs))
        sig = self.signatures.setdefault(sig_key, len(self.signatures))
        self.nodes[slot] = Node(path=path, cls=raw.cls, qualname=raw.cls, kind=spec.kind,
                                attrs=attrs, tensors=tensors, totals=totals)
        if len(numbered) > 1:
            self.repeats.extend(repeat_groups(path, numbered))
        return sig, totals


def _is_module_start(text: str, k: int) -> bool:
    m = _NAME.match(text, k)
    return m is not None and m.end() < len(text) and text[m.end()] == "("


def _valid(shapes: tuple[tuple[str, tuple[int, ...]], ...]
           ) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Shapes only where every dimension is a real size (attributes come from any text)."""
    if all(type(d) is int and d >= 0 for _, shape in shapes for d in shape):
        return shapes
    return ()


def _skip_ws(text: str, i: int) -> int:
    return _WS.match(text, i).end()  # type: ignore[union-attr]


def _too_long_number(key: str) -> bool:
    return any(len(part) > _MAX_DIGITS and part.isdecimal() for part in key.split("-"))


def _indent_of(text: str, pos: int) -> int:
    start = text.rfind("\n", 0, pos) + 1
    end = start
    while end < pos and text[end] == " ":
        end += 1
    return end - start


def _line_col(text: str, pos: int) -> tuple[int, int]:
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1
