"""Printed text (print(model)) pasted from anywhere: linear time, capped repeats, typed
errors for text print never writes, and DOT that parses for whatever names the text holds."""

from __future__ import annotations

import contextlib

from tests.adversarial.cases import add, raises

LIN = "Linear(in_features=2, out_features=2, bias=True)"


def _bad(name: str, text: str, match: str | None = None) -> None:
    def run() -> None:
        from modeldiff import parse_repr
        from modeldiff.errors import ReprParseError

        e = raises(ReprParseError, parse_repr, text, match=match)
        assert e.line >= 1  # type: ignore[attr-defined]
        assert e.column >= 1  # type: ignore[attr-defined]
    add("light", f"printed-{name}", run)


def _good(name: str, text: str, modules: int) -> None:
    def run() -> None:
        from modeldiff import parse_repr

        g = parse_repr(text)
        assert len(g) == modules, len(g)
        str(g)
        g.summary(depth=None, fold=False)
    add("light", f"printed-valid-{name}", run)


# -- sizes that must stay linear -----------------------------------------------------------
_good("300KB-child-name", f"Net(\n  ({'a' * 300_000}): {LIN}\n)", 2)
_good("300KB-class-name", f"Net(\n  (a): {'A' * 300_000}()\n)", 2)
_good("300KB-opaque-word", f"Net(\n  (a): {'a' * 300_000} )", 2)
_good("50MB-attribute-list", "Linear(" + "a=1, " * 10_000_000 + ")", 1)
_good("20MB-whitespace", "Net(" + " " * 20_000_000 + ")", 1)
_good("1MB-of-unclosed-quotes", "Net(" + " '\\'" * 250_000 + ")", 1)
_good("1MB-of-quoted-strings", "Net(" + " 'x'," * 200_000 + ")", 1)
_good("20k-children", "Net(" + "".join(f" ({i}): ReLU()" for i in range(20_000)) + ")",
      20_001)
_good("20k-distinct-children",
      "Net(" + "".join(f" (m{i}): Linear(in_features={i + 1}, out_features=2, bias=True)"
                       for i in range(20_000)) + ")", 20_001)
_good("depth-200", "A(" + "".join("(c): A(" for _ in range(199)) + ")" * 200, 200)
_good("huge-literal-attribute", "Linear(in_features=" + "9" * 5000 + ", out_features=2)", 1)
_good("deep-literal-attribute", "Linear(k=" + "(" * 5000 + ")" * 5000 + ")", 1)
_good("backslash-in-attrs", "Net(\n  (a): Linear(name='a\\\\', x=\"\\\\\")\n)", 2)
_good("unicode-names", "Réseau(\n  (couche_é): Linear(in_features=2, out_features=2)\n)", 2)

# -- refused ---------------------------------------------------------------------------------
_bad("empty", "", "empty")
_bad("blank", " \n\t ", "empty")
_bad("nul-byte", "Net(\x00)", "control character")
_bad("nul-in-name", f"Net(\n  (a\x00b): {LIN}\n)", "control character")
_bad("bell", "Net(\x07)", "control character")
_bad("escape-sequence", "Net(\x1b[31m)", "control character")
_bad("lone-surrogate", "Net(\ud800)", "control character")
_bad("binary-garbage", bytes(range(256)).decode("latin-1") * 10, None)
_bad("billion-modules",
     "Net(\n  (layers): ModuleList(\n    (0-999999999): 1000000000 x ReLU()\n  )\n)",
     "1,000,000")
_bad("nested-repeats-multiply",
     "Net(\n  (a): ModuleList(\n    (0-9999): 10000 x ModuleList(\n      (0-9999): 10000 x "
     "ReLU()\n    )\n  )\n)", "modules")
_bad("repeat-count-past-int-limit", f"Net(\n  (0-{'9' * 5000}): {'9' * 5000} x ReLU()\n)",
     "digits")
_bad("child-name-past-int-limit", f"Net(\n  ({'9' * 5000}): ReLU()\n)", "digits")
_bad("repeat-count-19-digits", "Net(\n  (0-9999999999999999999): 10000000000000000000 x ReLU()\n)",
     "digits")
_bad("repeat-does-not-add-up", "Net(\n  (0-5): 3 x ReLU()\n)", "add up")
_bad("depth-201", "A(" + "".join("(c): A(" for _ in range(201)) + ")" * 202, "nested")
_bad("depth-100000", "A(" + "(c): A(" * 100_000 + ")" * 100_001, "nested")
_bad("unclosed", f"Net(\n  (a): {LIN}\n", "ends before")
_bad("unclosed-deep", "A(" + "(c): A(" * 150, "ends before")
# text after a complete print is skipped (and said in the graph's source), as a pasted
# print's trailing notebook output is
_good("extra-after-close", "Net()\n)", 1)
# two prints in one text: the first is read and the second named (issue 11: pasted prints)
_good("two-prints", "Net()\nNet()", 1)
_bad("no-class-name", "(a): ReLU()", None)
_bad("only-a-name", "Linear", None)
_bad("number-first", "3Net()", None)
_bad("duplicate-children", "Net(\n  (a): ReLU()\n  (a): ReLU()\n)", "two children")
_bad("duplicate-by-repeat", "Net(\n  (0-1): 2 x ReLU()\n  (1): ReLU()\n)", "two children")


def _over_length() -> None:
    import modeldiff.limits as limits
    from modeldiff import parse_repr
    from modeldiff.errors import ReprParseError

    with limits.raised(MAX_PRINTED_BYTES=1000):
        raises(ReprParseError, parse_repr, "Net(" + " " * 2000 + ")", match="MAX_PRINTED_BYTES")


add("light", "printed-over-MAX_PRINTED_BYTES", _over_length)


def _repeat_cap() -> None:
    """The module cap counts what repeat notation expands to: at the cap it parses, one
    more is refused before anything is built."""
    import modeldiff.limits as limits
    from modeldiff import parse_repr
    from modeldiff.errors import ReprParseError

    text = "Net(\n  (layers): ModuleList(\n    (0-{0}): {1} x ReLU()\n  )\n)"
    with limits.raised(MAX_PRINTED_MODULES=1000):
        assert len(parse_repr(text.format(997, 998))) == 1000
        raises(ReprParseError, parse_repr, text.format(998, 999), match="MAX_PRINTED_MODULES")


add("light", "printed-repeat-notation-at-and-past-the-cap", _repeat_cap)


def _raised_depth() -> None:
    """Raising MAX_PRINTED_DEPTH far past Python's recursion limit parses, no RecursionError."""
    import modeldiff.limits as limits
    from modeldiff import parse_repr

    depth = 3000
    text = "A(" + "(c): A(" * (depth - 1) + ")" * depth
    with limits.raised(MAX_PRINTED_DEPTH=depth + 1):
        assert len(parse_repr(text)) == depth


add("light", "printed-depth-3000-with-limit-raised", _raised_depth)


def _not_text() -> None:
    from modeldiff import parse_repr
    from modeldiff.errors import InputTypeError

    for obj in (b"Net()", None, 3, ["Net()"]):
        raises(InputTypeError, parse_repr, obj)


add("light", "printed-not-a-str", _not_text)


# -- names that must survive into DOT --------------------------------------------------------
def _dot_parses(name: str, key: str, cls: str = "Linear") -> None:
    def run() -> None:
        import shutil
        import subprocess

        from modeldiff import parse_repr, render

        g = parse_repr(f"Net(\n  ({key}): {cls}(in_features=2, out_features=2)\n"
                       f"  (b): ReLU()\n)")
        source = render(g).source
        dot = shutil.which("dot")
        assert dot is not None, "Graphviz's dot is part of the test environment"
        out = subprocess.run([dot, "-Tcanon"], input=source.encode(), capture_output=True,
                             timeout=20, check=False)
        assert out.returncode == 0, out.stderr.decode()[-500:]
        assert out.stdout.count(b"->") >= 1  # the layout holds the two modules' edge
    add("light", f"printed-dot-{name}", run)


_dot_parses("backslash-at-end", "a\\\\")
_dot_parses("single-backslash-at-end", "a\\")
_dot_parses("backslash-quote", 'a\\"')
_dot_parses("quote", 'a"b')
_dot_parses("braces", "a{b}")
_dot_parses("angle-brackets", "a<b>")
_dot_parses("ampersand", "a&b;")
_dot_parses("pipe", "a|b")
_dot_parses("html-comment", "<!--x-->")
_dot_parses("class-backslash", "a", cls="Lin\\")
_dot_parses("unicode", "é中")


# -- fuzzing ----------------------------------------------------------------------------------
def _fuzz_text() -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from modeldiff import parse_repr
    from modeldiff.errors import ReprParseError

    @settings(max_examples=400, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.text(max_size=200))
    def check(text: str) -> None:
        with contextlib.suppress(ReprParseError):
            parse_repr(text)

    check()


def _fuzz_structured() -> None:
    """Pieces of printed text glued together at random: a graph or a ReprParseError."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from modeldiff import parse_repr
    from modeldiff.errors import ReprParseError

    pieces = st.sampled_from(["Net(", "Linear(", "ReLU()", "(a): ", "(0-1): 2 x ", "(3): ",
                              ")", "(", " ", "\n  ", "in_features=2", ", ", "'", '"', "\\",
                              "[", "]", "{", "}", "None", "(0-99999999999): 100000000000 x ",
                              "1e400", "x=", "Parameter containing:", "\t", "#"])

    @settings(max_examples=400, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(pieces, max_size=40))
    def check(parts: list[str]) -> None:
        try:
            g = parse_repr("".join(parts))
        except ReprParseError:
            return
        g.summary()
        assert g.nodes[0].path == ""

    check()


add("light", "printed-fuzz-arbitrary-text", _fuzz_text)
add("light", "printed-fuzz-glued-pieces", _fuzz_structured)


def _txt_file_cases() -> None:
    """walk(a .txt file): UTF-8 only, and never more than MAX_PRINTED_BYTES read."""
    import tempfile
    from pathlib import Path

    import modeldiff
    import modeldiff.limits as limits
    from modeldiff.errors import CheckpointError

    d = Path(tempfile.mkdtemp(prefix="adv-txt-"))
    (d / "latin1.txt").write_bytes("Réseau()".encode("latin-1"))
    raises(CheckpointError, modeldiff.walk, d / "latin1.txt", match="UTF-8")
    with (d / "big.txt").open("wb") as f:
        f.truncate(2000)  # sparse: refused by its size
    with limits.raised(MAX_PRINTED_BYTES=1000):
        raises(CheckpointError, modeldiff.walk, d / "big.txt", match="MAX_PRINTED_BYTES")
    (d / "ok.txt").write_text("Net(\n  (a): ReLU()\n)")
    assert len(modeldiff.walk(d / "ok.txt")) == 2


add("light", "printed-txt-files", _txt_file_cases)
