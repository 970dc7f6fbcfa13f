// The rotary family's CPU kernels over NumPy arrays.
#include <vector>

#include "kernels/python/arrays.h"
#include "kernels/python/bindings.h"
#include "kernels/rotary/rotary_cpu.h"

namespace tfkit {
namespace kernels {
namespace python {
namespace {

// x [batch, seq, ..., dim], positions [1 or batch, seq] and inv_freq
// [dim / 2] (x's dtype); sign 1 rotates, -1 is the inverse (the gradient).
py::array Rotate(const char* x_name, py::handle x_in, py::handle positions_in, py::handle inv_freq_in,
                 bool interleaved, int sign) {
  const py::array x = Checked(x_name, x_in, 3);
  const py::dtype dtype = x.dtype();
  const py::array positions = Checked("positions", positions_in, 1, &dtype);
  const py::array inv_freq = Checked("inv_freq", inv_freq_in, 1, &dtype);
  rotary::RotaryShape shape = RotaryShapeOf(x_name, ShapeOf(x), ShapeOf(positions), ShapeOf(inv_freq));
  shape.interleaved = interleaved;
  return WithFloatType(x.dtype(), [&](auto type) {
    using T = decltype(type);
    py::array y = Empty(ShapeOf(x), x.dtype());
    const T *xp = In<T>(x), *pp = In<T>(positions), *fp = In<T>(inv_freq);
    T* yp = Out<T>(y);
    py::gil_scoped_release unlocked;
    const int64_t half = shape.dim / 2;
    std::vector<T> cos_table(shape.table_rows * half), sin_table(shape.table_rows * half);
    rotary::RotaryTableRows(pp, fp, half, 0, shape.table_rows, cos_table.data(), sin_table.data());
    rotary::RotaryRows(xp, cos_table.data(), sin_table.data(), shape, static_cast<T>(sign), 0, shape.rows, yp);
    return y;
  });
}

}  // namespace

void BindRotary(py::module_& m) {
  m.def(
      "rotary_embedding",
      [](py::handle x, py::handle positions, py::handle inv_freq, bool interleaved) {
        return Rotate("x", x, positions, inv_freq, interleaved, 1);
      },
      py::arg("x"), py::arg("positions"), py::arg("inv_freq"), py::arg("interleaved") = false,
      "Rotates x's feature pairs by positions[s] * inv_freq[j].");
  m.def(
      "rotary_embedding_grad",
      [](py::handle dy, py::handle positions, py::handle inv_freq, bool interleaved) {
        return Rotate("dy", dy, positions, inv_freq, interleaved, -1);
      },
      py::arg("dy"), py::arg("positions"), py::arg("inv_freq"), py::arg("interleaved") = false,
      "rotary_embedding's gradient: the inverse rotation.");
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit
