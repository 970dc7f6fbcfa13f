"""Loading SavedModels that contain tfkit ops."""

from __future__ import annotations

import tensorflow as tf

from tfkit import _loader


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
