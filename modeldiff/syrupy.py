"""A syrupy extension for model graphs: ``assert modeldiff.walk(model) == snapshot``.

Needs syrupy (``pip install syrupy``); modeldiff works without it. The pytest plugin offers it
as the ``model_graph_snapshot`` fixture; or use it on syrupy's own fixture::

    from modeldiff.syrupy import ModelGraphExtension

    def test_architecture(snapshot):
        assert modeldiff.walk(build_model()) == snapshot.use_extension(ModelGraphExtension)

Each snapshot is one readable file, ``__snapshots__/<test module>/<test name>.modelgraph.json``,
holding :func:`modeldiff.testing.snapshot_json` (deterministic, nothing host- or
version-specific). Anything :func:`modeldiff.walk` reads can be asserted (a module, a config,
a graph). A mismatch shows the modeldiff structural diff, snapshot -> current, instead of a
line diff of two JSON texts. ``pytest --snapshot-update`` writes and removes snapshots as for
any syrupy snapshot. The file extension differs from the ``model_snapshot`` fixture's plain
``.json``, so neither tool takes the other's files for unused ones.

>>> import tempfile
>>> from torch import nn
>>> ext = ModelGraphExtension()
>>> text = ext.serialize(nn.Linear(2, 2))
>>> text.startswith("{") and ext.file_extension
'modelgraph.json'
>>> print("\\n".join(ext.diff_lines(ext.serialize(nn.Linear(2, 3)), text)))
Linear -> Linear  (path to path)
~ (root)  Linear  out_features 2 -> 3; weight shape (2, 2) -> (3, 2); bias shape (2,) -> (3,)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

try:
    from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode
except ImportError as e:  # pragma: no cover - exercised in a venv without syrupy
    from modeldiff.errors import MissingDependencyError

    raise MissingDependencyError("syrupy", purpose="modeldiff.syrupy (the syrupy extension)",
                                 install="pip install syrupy") from e

from modeldiff._core.graph import ModelGraph

__all__ = ["ModelGraphExtension"]


class ModelGraphExtension(SingleFileSnapshotExtension):
    """syrupy extension storing a model's walked graph as readable JSON, one file per snapshot,
    and explaining a mismatch with the modeldiff diff.

    >>> from torch import nn
    >>> ModelGraphExtension().serialize(nn.ReLU()).count('"cls": "ReLU"')
    1
    """

    file_extension = "modelgraph.json"
    _write_mode = WriteMode.TEXT

    def serialize(self, data: Any, **kwargs: Any) -> str:
        """The snapshot text of ``data`` (anything ``modeldiff.walk`` reads)."""
        from modeldiff.testing import snapshot_json

        return snapshot_json(data)

    def diff_lines(self, serialized_data: Any, snapshot_data: Any) -> Iterator[str]:
        """The modeldiff diff of the stored graph (``snapshot_data``) -> the current one; a
        line diff of the JSON when the stored file is not a graph or the diff is empty."""
        from modeldiff._compare import diff

        try:
            old = ModelGraph.from_json(str(snapshot_data))
            new = ModelGraph.from_json(str(serialized_data))
        except Exception:  # not a graph (hand-edited, older schema): syrupy's own line diff
            yield from super().diff_lines(serialized_data, snapshot_data)
            return
        d = diff(old, new, align=None)
        if not d:
            yield "no structural difference; the stored JSON differs:"
            yield from super().diff_lines(serialized_data, snapshot_data)
            return
        yield from str(d).splitlines()
