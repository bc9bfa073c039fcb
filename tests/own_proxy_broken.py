"""A proxy module whose import fails on a dependency it lacks (tests/test_own_proxy.py)."""

import evonorm_missing_dependency  # noqa: F401  (not installed anywhere)


def build(norm_act, num_classes, in_channels, width, depth):  # type: ignore[no-untyped-def]
    raise AssertionError("never imported")
