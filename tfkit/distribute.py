"""tfkit on `tf.distribute`: a server for the tasks of a cluster that run no
training script (parameter servers, ParameterServerStrategy's workers).

Every task of a cluster runs tfkit's ops: a resource op is colocated with its
variable, so an embedding bag over a table on a parameter server runs on that
parameter server. `start_server` loads tfkit's op library (and the caller's)
before the task starts serving, which a bare `tf.distribute.Server` does not.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from tfkit import _loader

MISSING_LIBRARY_ADVICE = (
    "every task of the cluster needs tfkit's ops: start parameter servers and ParameterServerStrategy's "
    "workers with `python -m tfkit server` (or tfkit.distribute.start_server), and import tfkit in every "
    "training script"
)


def start_server(
    cluster_resolver: tf.distribute.cluster_resolver.ClusterResolver | None = None,
    *,
    op_libraries: Sequence[str | os.PathLike] = (),
) -> tf.distribute.Server:
    """Starts this task's `tf.distribute.Server` with tfkit's ops loaded.

    Args:
      cluster_resolver: the cluster and this task's place in it; by default
        a `TFConfigClusterResolver` (the `TF_CONFIG` environment variable).
      op_libraries: further op libraries to load first (e.g. `tfkit.build`
        output), in order.

    Returns:
      The started server (`server.join()` blocks on it).

    Raises:
      OpLibraryError: tfkit's op library or one of `op_libraries` does not load.
      ValueError: the resolver names no cluster or no task of it.
    """
    _loader.load_library()
    for path in op_libraries:
        _loader.load_path(Path(path))
    resolver = cluster_resolver or tf.distribute.cluster_resolver.TFConfigClusterResolver()
    cluster = resolver.cluster_spec()
    task_type, task_id = resolver.task_type, resolver.task_id
    if not cluster.jobs:
        raise ValueError("no cluster to join: set TF_CONFIG (its `cluster` and `task`) or pass a cluster_resolver")
    if task_type not in cluster.jobs or task_id is None or task_id >= cluster.num_tasks(task_type):
        raise ValueError(f"task {task_type!r} {task_id!r} is not in the cluster {cluster.as_dict()}")
    return tf.distribute.Server(
        cluster,
        job_name=task_type,
        task_index=task_id,
        protocol=resolver.rpc_layer or "grpc",
        start=True,
    )
