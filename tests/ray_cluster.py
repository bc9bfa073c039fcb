"""A real local two-node Ray cluster (one CPU each) for the Ray tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ray.cluster_utils import Cluster


@contextmanager
def two_node_cluster() -> Iterator[Cluster]:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
        shutdown_at_exit=True,
    )
    cluster.add_node(num_cpus=1)
    try:
        yield cluster
    finally:
        cluster.shutdown()
