"""Loading SavedModels that contain tfkit ops."""

from __future__ import annotations

import tensorflow as tf

from tfkit import _loader


def load(export_dir: str, tags=None, options=None):
    """Registers tfkit's ops, then loads a SavedModel with tf.saved_model.load.

    A SavedModel exported from a model that used the compiled backend holds
    `Tfkit>...` ops; TensorFlow can only load it once they are registered.
    This is all a serving process needs from tfkit: the model's Python code
    is not required.

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
