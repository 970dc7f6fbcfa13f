// The rotary family's shape rule, written once for the shape functions, the
// OpKernels and the kernels module.
#ifndef TFKIT_KERNELS_ROTARY_ROTARY_RULES_H_
#define TFKIT_KERNELS_ROTARY_ROTARY_RULES_H_

#include <cstdint>
#include <string>

#include "kernels/common/rules.h"

namespace tfkit {
namespace kernels {
namespace rotary {

// The shape of one call: x is [batch, seq, heads, dim].
struct RotaryShape {
  int64_t batch = 0;
  int64_t seq = 0;
  int64_t heads = 0;
  int64_t dim = 0;
  int64_t rows = 0;        // batch * seq (0 when x has no elements)
  int64_t table_rows = 0;  // of the angle tables: positions' batch * seq
  bool per_batch_positions = false;  // positions are [batch, seq], else [1, seq]
  bool interleaved = false;
};

// x [batch, seq, ..., dim] with an even dim (named `x_name` in messages),
// positions [1 or batch, seq] and inv_freq [dim / 2]. Fills *shape (all but
// interleaved); unknown sizes (shape functions) agree with any.
inline std::string RotaryShapeError(const char* x_name, const Dims& x, const Dims& positions, const Dims& inv_freq,
                                    RotaryShape* shape) {
  if (x.size() < 3) {
    return std::string(x_name) + " must have rank >= 3 ([batch, sequence, ..., features]), got shape " +
           DimsString(x);
  }
  shape->batch = x[0];
  shape->seq = x[1];
  shape->dim = x.back();
  std::string count_error =
      PartCountError(x_name, std::string("the heads of ") + x_name, x, 2, x.size() - 1, &shape->heads);
  if (count_error.empty()) {
    count_error = PartCountError(x_name, std::string("the (batch, sequence) rows of ") + x_name, x, 0, 2, &shape->rows);
  }
  if (!count_error.empty()) return count_error;
  if (DimKnown(shape->dim) && shape->dim % 2 != 0) {
    return std::string(x_name) + "'s feature dimension must be even (pairs of features are rotated), got shape " +
           DimsString(x);
  }
  const bool rows_ok = positions.size() == 2 && (DimsAgree(positions[0], 1) || DimsAgree(positions[0], shape->batch));
  if (!rows_ok || !DimsAgree(positions[1], shape->seq)) {
    return "positions must have shape " + DimsString({1, shape->seq}) + " or " +
           DimsString({shape->batch, shape->seq}) + " (the sequence, for all batch rows or per row), got shape " +
           DimsString(positions);
  }
  shape->per_batch_positions = positions[0] != 1 || shape->batch == 1;
  shape->table_rows = shape->per_batch_positions ? shape->rows : shape->seq;
  const int64_t half = DimKnown(shape->dim) ? shape->dim / 2 : kUnknownDim;
  if (inv_freq.size() != 1 || !DimsAgree(inv_freq[0], half)) {
    return "inv_freq must have shape " + DimsString({half}) + " (half the feature dimension), got shape " +
           DimsString(inv_freq);
  }
  return "";
}

}  // namespace rotary
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_ROTARY_ROTARY_RULES_H_
