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
  rotary::RotaryShape shape;
  shape.batch = x.shape[0];
  shape.seq = x.shape[1];
  shape.dim = x.shape.back();
  shape.heads = x.size() == 0 ? 0 : x.size() / (shape.batch * shape.seq * shape.dim);
  shape.interleaved = interleaved;
  if (shape.dim % 2 != 0) {
    throw py::value_error(std::string(x_name) + "'s feature dimension must be even, got shape " +
                          ShapeString(x.shape));
  }
  const GpuArray positions = Gpu("positions", positions_in, 2, acc);
  if (positions.shape.size() != 2 || positions.shape[1] != shape.seq ||
      (positions.shape[0] != 1 && positions.shape[0] != shape.batch)) {
    throw py::value_error("positions must have shape (1, " + std::to_string(shape.seq) + ") or (" +
                          std::to_string(shape.batch) + ", " + std::to_string(shape.seq) + "), got " +
                          ShapeString(positions.shape));
  }
  shape.per_batch_positions = positions.shape[0] != 1 || shape.batch == 1;
  const GpuArray inv_freq = Gpu("inv_freq", inv_freq_in, 1, acc, {shape.dim / 2});
  const GpuArray y = Gpu(sign > 0 ? "y" : "dx", y_in, 3, x.dtype, x.shape);
  WithStorageType(x.dtype, [&](auto type) {
    using T = decltype(type);
    using U = Acc<T>;
    Workspace<U> tables(2 * positions.shape[0] * shape.seq * (shape.dim / 2), StreamOf(stream));
    CheckLaunch(rotary::LaunchRotary(StreamOf(stream), Ptr<T>(x), Ptr<U>(positions), Ptr<U>(inv_freq), shape,
                                     static_cast<U>(sign), tables.ptr,
                                     tables.ptr + positions.shape[0] * shape.seq * (shape.dim / 2), Ptr<T>(y)),
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
