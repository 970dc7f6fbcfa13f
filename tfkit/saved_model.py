"""SavedModels and tfkit: loading, checking, and the export guard.

- `load` registers tfkit's ops, then loads (plain `tf.saved_model.load` works
  too after `import tfkit`).
- `check` inspects a SavedModel on disk without running it: Python-callback
  ops no server can run, and the `Tfkit>` (or other custom) ops it needs.
- The export guard: `import tfkit` makes every SavedModel writer
  (`tf.saved_model.save`, Keras `model.export`, ...) refuse, before anything
  is written, a model that traced a prototype op (`tfkit.prototype`), whose
  Python function a SavedModel cannot hold.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tfkit import _compat, _loader, prototype

__all__ = ["CheckReport", "ExportError", "check", "load"]

CALLBACK_OP_TYPES = prototype.CALLBACK_OP_TYPES


class ExportError(ValueError):
    """A SavedModel would hold prototype ops, which no server can run."""


def load(export_dir: str, tags=None, options=None):
    """Checks that tfkit's ops are registered, then runs tf.saved_model.load.

    A SavedModel exported from a model that used the compiled backend holds
    `Tfkit>...` ops; TensorFlow can only load it once they are registered.
    `import tfkit` registers them, so plain `tf.saved_model.load` works too;
    this function differs in raising tfkit's own error, which says why and
    how to rebuild, when the op library could not load. The model's Python
    code is not required.

    Args:
      export_dir: The SavedModel directory (e.g. from `model.export`).
      tags: Passed to tf.saved_model.load.
      options: Passed to tf.saved_model.load.

    Returns:
      The loaded object, as tf.saved_model.load returns it.

    Raises:
      OpLibraryError: the op library is missing or was built for another
        TensorFlow version.
    """
    _loader.load_library()
    return tf.saved_model.load(export_dir, tags=tags, options=options)


@dataclasses.dataclass(frozen=True)
class Node:
    """Where an op stands in a SavedModel: its type, node and function."""

    op_type: str
    node: str
    function: str  # "" for the top-level graph

    def where(self) -> str:
        return f"node {self.node!r}" + (f" in function {self.function!r}" if self.function else "")


@dataclasses.dataclass
class CheckReport:
    """What `check` found. `ok` is False when a server could not run the model."""

    export_dir: str
    python_callbacks: list[Node]
    custom_ops: dict[str, bool]  # op type -> registered in this process

    @property
    def missing_ops(self) -> list[str]:
        return sorted(name for name, provided in self.custom_ops.items() if not provided)

    @property
    def ok(self) -> bool:
        return not self.python_callbacks and not self.missing_ops

    def __str__(self) -> str:
        lines = [f"SavedModel {self.export_dir}: {'OK' if self.ok else 'PROBLEMS'}"]
        if self.python_callbacks:
            lines.append(f"python callback ops ({len(self.python_callbacks)}): no server can run these")
            lines += [f"  {n.op_type}: {n.where()}" for n in self.python_callbacks]
        else:
            lines.append("python callback ops: none")
        if self.custom_ops:
            lines.append("custom ops:")
            for name, provided in sorted(self.custom_ops.items()):
                state = "provided by the loaded op library" if provided else "NOT registered: load its op library"
                lines.append(f"  {name}: {state}")
        else:
            lines.append("custom ops: none")
        return "\n".join(lines)


def check(export_dir: str) -> CheckReport:
    """Inspects a SavedModel on disk without loading or running it.

    Reports the Python-callback ops (`PyFunc`, `PyFuncStateless`,
    `EagerPyFunc`) that no model server can run, and the custom ops it
    needs (namespaced ones such as `Tfkit>LayerNorm`, or any op type this
    process has not registered), with whether they are registered here.

    Raises:
      FileNotFoundError: no saved_model.pb in `export_dir`.
    """
    path = Path(export_dir) / "saved_model.pb"
    if not path.is_file():
        raise FileNotFoundError(f"{export_dir} is not a SavedModel: no saved_model.pb there")
    try:
        library = _loader.load_library()
    except _loader.OpLibraryError:
        library = None  # its ops are then reported as not registered
    saved = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    callbacks, custom = [], {}
    for meta_graph in saved.meta_graphs:
        for node in _nodes(meta_graph.graph_def):
            if node.op_type in CALLBACK_OP_TYPES:
                callbacks.append(node)
            else:
                registered = _registered(node.op_type, library)
                if ">" in node.op_type or not registered:
                    custom[node.op_type] = registered
    return CheckReport(str(export_dir), callbacks, custom)


def _registered(op_type: str, library) -> bool:
    """Whether this process registered the op. Where TensorFlow's registry
    can't be asked (tfkit._compat, feature "op_registry"): a namespaced op
    when tfkit's library provides it, and any other op as TensorFlow's."""
    registered = _compat.op_registered(op_type)
    if registered is not None:
        return registered
    if ">" not in op_type:
        return True
    return library is not None and hasattr(library, _compat.python_op_name(op_type))


def _nodes(graph_def):
    """Every node of a GraphDef and of its function library, with where it is."""
    for where, node in _node_defs(graph_def):
        yield Node(node.op, node.name, where)


def _prototype_nodes(graph_def) -> list[tuple[str, Node]]:
    """The callback nodes that tfkit prototype ops made, with the op names."""
    found = []
    for where, node_def in _node_defs(graph_def):
        if node_def.op in CALLBACK_OP_TYPES:
            name = prototype.prototype_op_of(node_def)
            if name is not None:
                found.append((name, Node(node_def.op, node_def.name, where)))
    return found


def _node_defs(graph_def):
    for node in graph_def.node:
        yield "", node
    for function in graph_def.library.function:
        for node in function.node_def:
            yield function.signature.name, node


def _refuse_prototypes(meta_graph_def) -> None:
    found = _prototype_nodes(meta_graph_def.graph_def)
    if not found:
        return
    uses = "\n".join(f"  - {name}: {node.where()}" for name, node in found)
    names = ", ".join(sorted({name.split(" (")[0] for name, _ in found}))
    raise ExportError(
        "tfkit: refusing to write a SavedModel that uses prototype ops, whose Python functions a SavedModel "
        f"cannot hold (a server would fail when it calls them):\n{uses}\n"
        f"Replace {names} before exporting: declare a pure-TensorFlow reference (@op.reference), which "
        'backend="auto" or backend="reference" exports, or a compiled implementation. Nothing was written.'
    )


def _install_export_guard() -> bool:
    """Wraps TensorFlow's SavedModel builder (used by tf.saved_model.save,
    Keras's model.export and export_meta_graph) so that a model holding
    prototype ops is refused after it is traced and before anything is
    written. Returns False where TensorFlow's builder can't be wrapped
    (tfkit._compat, feature "export_guard"; it then warned why)."""
    return _compat.install_export_guard(_refuse_prototypes)


_install_export_guard()
