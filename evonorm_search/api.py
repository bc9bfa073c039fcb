"""The Python API for using layers: `load_layer(db, candidate_id)` for a searched one,
`load_layer(name_or_file)` for a named one (known or discovered) or a layer graph file.

Owns reading a candidate's graph back from a search database (validated, never trusted)
and turning it into a module factory through the same compile path the search trained
with, so what was evaluated is what ships.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from torch import nn

from db.store import CandidateRecord, SearchStore
from evonorm_search.compile import layer_factory
from evonorm_search.errors import EvonormError, GraphError, StoreError
from evonorm_search.graph import LayerGraph
from evonorm_search.layer_spec import load_graph_spec


@contextmanager
def _opened(db: str | Path | SearchStore) -> Iterator[SearchStore]:
    """`db` itself when it is an open store, else the file opened read-only for the block."""
    if isinstance(db, SearchStore):
        yield db
        return
    with SearchStore.open(db, readonly=True) as store:
        yield store


def candidate_graph(store: SearchStore, candidate_id: int) -> tuple[CandidateRecord, LayerGraph]:
    """A stored candidate and its validated graph; StoreError when either is unusable."""
    record = store.get_candidate(candidate_id)
    try:
        graph = LayerGraph.from_json(record.graph_json)
    except GraphError as error:
        raise StoreError(
            f"candidate {candidate_id} in {store.path} has an invalid layer graph ({error}); "
            "the database was altered or damaged: use another candidate or restore a backup"
        ) from None
    return record, graph


def load_layer(
    source: str | Path | SearchStore,
    candidate_id: int | None = None,
    *,
    groups: int = 32,
    eps: float = 1e-5,
    momentum: float = 0.1,
    transformer: bool = False,
) -> Callable[[int], nn.Module]:
    """`num_channels -> nn.Module` computing a layer.

    With `candidate_id`: that candidate of the search database `source` (a path, opened
    read-only, or an open `SearchStore`). Without: `source` is a layer name, known or
    discovered (`evonorm_search.known`, e.g. "evonorm_s0", "swish_group_rmsnorm"), or a
    layer graph JSON file (as `evonorm show NAME --graph` writes). The module is freshly
    initialised (v0 = 0, v1 = 1, gamma = 1, beta = 0): the search stores layer graphs,
    not trained weights. `groups`, `eps` and `momentum` are passed to
    `evonorm_search.compile.compile_layer`. With `transformer=True` the module is a
    Transformer norm over the last dim of (B, T, C) tensors
    (`evonorm_search.tokens.TokenLayer`, usable as timm's norm_layer and with
    `evonorm_search.swap.swap_layernorm`); else it takes (N, C, H, W) maps.
    """
    if candidate_id is None:
        if isinstance(source, SearchStore):
            raise TypeError("load_layer(store) needs the candidate_id of a layer in it")
        try:
            graph = load_graph_spec(str(source))
        except EvonormError as error:
            raise type(error)(f"{error} (a candidate of a search database needs its "
                              "candidate_id: load_layer(db, candidate_id))") from None
    else:
        with _opened(source) as store:
            _, graph = candidate_graph(store, candidate_id)
    if transformer:
        from evonorm_search.tokens import token_layer_factory

        return token_layer_factory(graph, groups=groups, eps=eps, momentum=momentum)
    return layer_factory(graph, groups=groups, eps=eps, momentum=momentum)
