"""Resolve what a user names as a layer: a layer name (known or discovered, see
`evonorm_search.known`) or the path of a layer graph JSON file."""

from __future__ import annotations

from pathlib import Path

from evonorm_search.errors import EvonormError, GraphError
from evonorm_search.graph import LayerGraph
from evonorm_search.known import NAMED_LAYERS

# A layer graph is a few hundred bytes; refuse to slurp anything far larger.
MAX_GRAPH_FILE_BYTES = 1_000_000


def load_graph_spec(spec: str) -> LayerGraph:
    """The named layer (known or discovered) called `spec`, else the validated graph in
    JSON file `spec`."""
    if spec in NAMED_LAYERS:
        return NAMED_LAYERS[spec]
    path = Path(spec)
    if not path.exists():
        if path.suffix == ".json" or len(path.parts) > 1:
            raise EvonormError(
                f"layer graph file {spec!r} does not exist; check the path "
                f"or use a layer name ({', '.join(NAMED_LAYERS)})"
            )
        raise GraphError(
            f"unknown layer name {spec!r}; use one of: {', '.join(NAMED_LAYERS)}, "
            "or the path of a layer graph JSON file"
        )
    if not path.is_file():
        raise EvonormError(f"{spec!r} is not a file; give a layer graph JSON file")
    try:
        if path.stat().st_size > MAX_GRAPH_FILE_BYTES:
            raise EvonormError(
                f"{spec!r} is larger than {MAX_GRAPH_FILE_BYTES} bytes, too large for a "
                "layer graph; give a layer graph JSON file"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise EvonormError(f"cannot read {spec!r} ({error.strerror}); check its permissions") from None
    except UnicodeDecodeError:
        raise GraphError(f"{spec!r} is not UTF-8 text; give a layer graph JSON file") from None
    try:
        return LayerGraph.from_json(text)
    except GraphError as error:
        raise GraphError(f"{spec}: {error}") from None
