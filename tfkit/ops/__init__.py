"""tfkit ops: documented wrappers over the compiled kernels, with references."""

from tfkit.ops.norm import layer_norm, layer_norm_reference, rms_norm, rms_norm_reference

__all__ = ["layer_norm", "layer_norm_reference", "rms_norm", "rms_norm_reference"]
