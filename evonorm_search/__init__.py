"""evonorm_search: evolutionary search for normalization-activation layers.

The public Python API is `load_layer(db, candidate_id)`, or `load_layer(name_or_file)`
for a named layer or a layer graph file (see `evonorm_search.api`). It is
resolved lazily so that importing a submodule (graph, errors, task, ...) does not pull in
torch and the database layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evonorm_search.api import load_layer

__all__ = ["load_layer"]


def __getattr__(name: str) -> Any:
    if name == "load_layer":
        from evonorm_search.api import load_layer

        return load_layer
    raise AttributeError(f"module 'evonorm_search' has no attribute {name!r}")
