"""The primitive-op vocabulary of the search (PAPER.md section 2): 12 element-wise ops
and 12 statistics in one registry. Knows nothing about graphs."""

from primitives import elementwise, statistics  # noqa: F401  (registers the ops)
from primitives.registry import (
    AXIS_SETS,
    OPS,
    SPACES,
    Op,
    SearchSpace,
    UnknownOpError,
    get_op,
    get_space,
    op_names,
    register,
)

__all__ = [
    "AXIS_SETS", "OPS", "SPACES", "Op", "SearchSpace", "UnknownOpError", "get_op", "get_space",
    "op_names", "register",
]
