"""Image ops: the resampler family under the names TensorFlow Addons users know.

`tfkit.image.resampler` and `tfkit.image.dense_image_warp` are the ops of
`tfkit.ops.resampler` (see there).
"""

from tfkit.ops.resampler import dense_image_warp, resampler

__all__ = ["dense_image_warp", "resampler"]
