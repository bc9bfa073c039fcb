"""The primitive-op vocabulary of the search: the paper's 12 element-wise ops and 12
statistics (PAPER.md section 2), plus 6 per-position statistics over channels for
Transformer norm slots, in one registry. Knows nothing about graphs."""

from primitives import elementwise, statistics  # noqa: F401  (registers the ops)
from primitives.registry import (
    AXIS_SETS,
    OPS,
    PAPER_AXIS_SETS,
    SPACES,
    Op,
    SearchSpace,
    TOKEN_AXIS_SETS,
    UnknownOpError,
    get_op,
    get_space,
    op_names,
    register,
)

__all__ = [
    "AXIS_SETS", "OPS", "PAPER_AXIS_SETS", "SPACES", "TOKEN_AXIS_SETS", "Op", "SearchSpace", "UnknownOpError", "get_op", "get_space",
    "op_names", "register",
]
