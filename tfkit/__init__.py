"""tfkit: fast fused TensorFlow custom ops, their gradients and Keras 3 layers.

`import tfkit` is all a loader needs: it registers tfkit's ops with
TensorFlow (so `tf.saved_model.load` reads SavedModels holding `Tfkit>` ops)
and its layers with Keras (so `keras.models.load_model` reads `.keras` files
holding them). It never fails because of the compiled op library: a missing,
stale or unloadable library leaves the pure-TensorFlow reference ops in use,
with one warning that says why and how to rebuild.
"""

from __future__ import annotations

from tfkit import _loader, backend
from tfkit._loader import OpLibraryError, build_info, library_path, load_library

__version__ = "0.1.0"


def _register_ops() -> None:
    """Loads the op library now, so its ops are registered before any load."""
    try:
        _loader.load_library()
    except OpLibraryError as err:
        try:
            asked = backend.resolve(None)
        except ValueError:
            asked = "auto"  # a bad TFKIT_BACKEND is reported where an op runs
        if asked != "reference":
            backend.warn_fallback(err, stacklevel=3)


_register_ops()

from tfkit import build, declare, distribute, image, layers, ops, prototype, saved_model, testing  # noqa: E402
from tfkit.declare import Op  # noqa: E402
from tfkit.layers.attention import use_fused_attention  # noqa: E402

__all__ = [
    "Op",
    "OpLibraryError",
    "__version__",
    "backend",
    "build",
    "build_info",
    "declare",
    "distribute",
    "image",
    "layers",
    "library_path",
    "load_library",
    "ops",
    "prototype",
    "saved_model",
    "testing",
    "use_fused_attention",
]
