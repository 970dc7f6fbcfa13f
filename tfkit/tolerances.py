"""tfkit's tolerance table: one row per float dtype, one column per kind of comparison.

`tfkit.testing.opcheck`, tfkit's own tests (tests/conftest.py) and the GPU
check (tools/gpu_check.py, which loads this file by its path where no
TensorFlow is installed: it imports nothing) all read it; nothing else holds
tolerances by dtype. Rows are looked up by a dtype or its name.

Columns of a `Tolerance` row:

- `reference` (rtol, atol): an op's output against another implementation
  of the same op run in the same dtype (opcheck's reference, eager_vs_graph
  and XLA comparisons, and the op's gradients against the reference's).
- `numpy` (rtol, atol): an op's output against the same math computed by
  NumPy in float64 (`assert_close` in tfkit's tests). The float64 entries of
  the two columns differ on purpose: against a float64 NumPy oracle a
  float64 op is held to 1e-10, while two TensorFlow implementations of an op
  in float64 (kernels vs a composite, eager vs XLA) are compared at 1e-7.
- `gradient` (rtol): numeric (central differences) vs analytic gradients
  computed in this dtype, relative to max(1, the largest numeric
  derivative). opcheck computes them in float64 when the op runs in float64,
  else (saying so in its report) in the inputs' dtype; float32's 2e-3 makes
  a float32 gradient that is 1% off fail.
- `gradient_step`: the central-difference step used in this dtype.
- `kernel`: a CUDA kernel's result against the CPU kernels run in float64
  on the same (dtype-rounded) inputs, as |error| / (1 + |reference|).
"""

from __future__ import annotations

import dataclasses

__all__ = ["TOLERANCES", "Tolerance", "tolerance"]


@dataclasses.dataclass(frozen=True)
class Tolerance:
    reference: tuple[float, float]  # (rtol, atol) against another implementation, same dtype
    numpy: tuple[float, float]  # (rtol, atol) against float64 NumPy
    gradient: float  # rtol of numeric vs analytic gradients computed in this dtype
    gradient_step: float  # the central-difference step in this dtype
    kernel: float  # CUDA kernels against the float64 CPU kernels, relative to 1 + |reference|


class _ByDtype(dict):
    """Rows keyed by dtype name; a tf.DType or NumPy dtype finds its row too."""

    def __getitem__(self, dtype) -> Tolerance:
        return super().__getitem__(_name(dtype))

    def __contains__(self, dtype) -> bool:
        return super().__contains__(_name(dtype))

    def get(self, dtype, default=None):
        return super().get(_name(dtype), default)


def _name(dtype) -> str:
    return dtype if isinstance(dtype, str) else getattr(dtype, "name", str(dtype))


TOLERANCES: dict[str, Tolerance] = _ByDtype(
    float64=Tolerance(reference=(1e-7, 1e-7), numpy=(1e-10, 1e-10), gradient=1e-5, gradient_step=1e-6, kernel=1e-9),
    float32=Tolerance(reference=(1e-4, 1e-4), numpy=(1e-4, 1e-4), gradient=2e-3, gradient_step=1e-3, kernel=2e-3),
    float16=Tolerance(reference=(1e-2, 1e-2), numpy=(1e-2, 1e-2), gradient=5e-2, gradient_step=1e-1, kernel=3e-2),
    bfloat16=Tolerance(reference=(3e-2, 6e-2), numpy=(2e-2, 6e-2), gradient=1.5e-1, gradient_step=2e-1, kernel=2e-1),
)


def tolerance(dtype) -> Tolerance:
    """The row for `dtype`; float32's for a dtype without one (integers, bool)."""
    return TOLERANCES.get(dtype, TOLERANCES["float32"])
