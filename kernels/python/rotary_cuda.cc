// The rotary family's CUDA launcher over GPU arrays (outputs given by the caller).
#include "kernels/python/bindings.h"
#include "kernels/python/cuda_arrays.h"
#include "kernels/rotary/rotary_gpu.h"

namespace tfkit {
namespace kernels {
namespace python {
namespace {

// sign 1 rotates x into y, -1 is the inverse (the gradient).
void Rotate(const char* x_name, py::handle x_in, py::handle positions_in, py::handle inv_freq_in, py::handle y_in,
            bool interleaved, uintptr_t stream, int sign) {
  const GpuArray x = Gpu(x_name, x_in, 3);
  const std::string acc = AccDtype(x.dtype);
  const GpuArray positions = Gpu("positions", positions_in, 1, acc);
  const GpuArray inv_freq = Gpu("inv_freq", inv_freq_in, 1, acc);
  rotary::RotaryShape shape = RotaryShapeOf(x_name, x.shape, positions.shape, inv_freq.shape);
  shape.interleaved = interleaved;
  const GpuArray y = Gpu(sign > 0 ? "y" : "dx", y_in, 3, x.dtype, x.shape);
  WithStorageType(x.dtype, [&](auto type) {
    using T = decltype(type);
    using U = Acc<T>;
    const int64_t table_size = shape.table_rows * (shape.dim / 2);
    Workspace<U> tables(2 * table_size, StreamOf(stream));
    CheckLaunch(rotary::LaunchRotary(StreamOf(stream), Ptr<T>(x), Ptr<U>(positions), Ptr<U>(inv_freq), shape,
                                     static_cast<U>(sign), tables.ptr, tables.ptr + table_size, Ptr<T>(y)),
                "rotary_embedding");
  });
}

}  // namespace

void BindRotaryCuda(py::module_& cuda) {
  cuda.def(
      "rotary_embedding",
      [](py::handle x, py::handle positions, py::handle inv_freq, py::handle y, bool interleaved, uintptr_t stream) {
        Rotate("x", x, positions, inv_freq, y, interleaved, stream, 1);
      },
      py::arg("x"), py::arg("positions"), py::arg("inv_freq"), py::arg("y"), py::arg("interleaved") = false,
      py::arg("stream") = 0, "Rotary embedding of x into y.");
  cuda.def(
      "rotary_embedding_grad",
      [](py::handle dy, py::handle positions, py::handle inv_freq, py::handle dx, bool interleaved, uintptr_t stream) {
        Rotate("dy", dy, positions, inv_freq, dx, interleaved, stream, -1);
      },
      py::arg("dy"), py::arg("positions"), py::arg("inv_freq"), py::arg("dx"), py::arg("interleaved") = false,
      py::arg("stream") = 0, "The inverse rotation of dy into dx.");
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit
