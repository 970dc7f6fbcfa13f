"""How tfkit's messages print a shape, in Python as in C++.

One rule: TensorFlow's own C++ way (`PartialTensorShape::DebugString`), which
tfkit's C++ rules follow too (`DimsString`, kernels/common/rules.h), so that a
message reads the same whether an OpKernel, a shape function or a Python
wrapper raised it, eagerly or in a graph: "[2,3]", "?" for a dimension not
known yet ("[?,3]"), "[]" for a scalar and "<unknown>" for an unknown rank.
"""

from __future__ import annotations

import tensorflow as tf


def shape_string(shape) -> str:
    """`shape` as tfkit's messages print it: "[2,3]", "[?,3]", "[]", "<unknown>".

    Args:
      shape: A `tf.TensorShape`, a tensor, array or spec (anything with a
        `shape`), or a sequence of sizes (None where unknown).
    """
    static = tf.TensorShape(getattr(shape, "shape", shape))
    if static.rank is None:
        return "<unknown>"
    return "[" + ",".join("?" if dim is None else str(dim) for dim in static.as_list()) + "]"
