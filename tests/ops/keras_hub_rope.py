"""keras_hub's RotaryEmbedding layer, the oracle the rotary family matches.

`import keras_hub` pulls in its tokenizers' dependencies (tensorflow-text,
sentencepiece, ...), which the tests do not need: the layer's module is
loaded alone, with keras_hub's export decorator replaced by a no-op."""

import importlib.util
import sys
import types
from pathlib import Path


def keras_hub_rotary_embedding():
    """keras_hub.layers.RotaryEmbedding, or None if keras-hub is not installed."""
    spec = importlib.util.find_spec("keras_hub")
    if spec is None:
        return None
    source = Path(spec.origin).parent / "src" / "layers" / "modeling" / "rotary_embedding.py"
    export = types.ModuleType("keras_hub.src.api_export")
    export.keras_hub_export = lambda *names: (lambda cls: cls)
    stubs = {"keras_hub": types.ModuleType("keras_hub"), "keras_hub.src": types.ModuleType("keras_hub.src")}
    stubs["keras_hub.src.api_export"] = export
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        module_spec = importlib.util.spec_from_file_location("keras_hub_rotary_embedding", source)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return module.RotaryEmbedding
