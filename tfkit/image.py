"""Image ops: the resampling family under the names TensorFlow Addons users know.

`tfkit.image.resampler` and `tfkit.image.dense_image_warp` are the ops of
`tfkit.ops.resampling` (see there).
"""

from tfkit.ops.resampling import dense_image_warp, resampler

__all__ = ["dense_image_warp", "resampler"]
