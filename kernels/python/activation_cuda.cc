// The activation family's CUDA launchers over GPU arrays (outputs given by the caller).
#include <string>

#include "kernels/activation/activation_gpu.h"
#include "kernels/python/bindings.h"
#include "kernels/python/cuda_arrays.h"

namespace tfkit {
namespace kernels {
namespace python {
namespace {

using activation::Activation;

void BiasActivation(py::handle x_in, py::handle bias_in, py::handle y_in, const std::string& name, uintptr_t stream) {
  const Activation act = ActivationNamed(name);
  const GpuArray x = Gpu("x", x_in, 1);
  const GpuArray bias = Gpu("bias", bias_in, 1, x.dtype, {LastDim(x)}), y = Gpu("y", y_in, 1, x.dtype, x.shape);
  WithStorageType(x.dtype, [&](auto type) {
    using T = decltype(type);
    CheckLaunch(activation::LaunchBiasActivation(StreamOf(stream), act, Ptr<T>(x), Ptr<T>(bias), Rows(x), LastDim(x),
                                                 Ptr<T>(y)),
                "bias_activation");
  });
}

void BiasActivationGrad(py::handle dy_in, py::handle x_in, py::handle bias_in, py::handle dx_in, py::handle dbias_in,
                        const std::string& name, uintptr_t stream) {
  const Activation act = ActivationNamed(name);
  const GpuArray x = Gpu("x", x_in, 1);
  const int64_t cols = LastDim(x), rows = Rows(x);
  const GpuArray dy = Gpu("dy", dy_in, 1, x.dtype, x.shape), dx = Gpu("dx", dx_in, 1, x.dtype, x.shape);
  const GpuArray bias = Gpu("bias", bias_in, 1, x.dtype, {cols}), dbias = Gpu("dbias", dbias_in, 1, x.dtype, {cols});
  WithStorageType(x.dtype, [&](auto type) {
    using T = decltype(type);
    Workspace<Wide<Acc<T>>> workspace(activation::BiasActivationGradWorkspaceSize(rows, cols), StreamOf(stream));
    CheckLaunch(activation::LaunchBiasActivationGrad(StreamOf(stream), act, Ptr<T>(dy), Ptr<T>(x), Ptr<T>(bias), rows,
                                                     cols, workspace.ptr, Ptr<T>(dx), Ptr<T>(dbias)),
                "bias_activation grad");
  });
}

void Gated(py::handle x_in, py::handle y_in, const std::string& name, uintptr_t stream) {
  const Activation act = ActivationNamed(name);
  const GpuArray x = Gpu("x", x_in, 1);
  const GpuArray y = Gpu("y", y_in, 1, x.dtype, GatedShapeOf(x.shape));
  WithStorageType(x.dtype, [&](auto type) {
    using T = decltype(type);
    CheckLaunch(activation::LaunchGatedActivation(StreamOf(stream), act, Ptr<T>(x), Rows(x), LastDim(y), Ptr<T>(y)),
                "gated_activation");
  });
}

void GatedGrad(py::handle dy_in, py::handle x_in, py::handle dx_in, const std::string& name, uintptr_t stream) {
  const Activation act = ActivationNamed(name);
  const GpuArray x = Gpu("x", x_in, 1);
  const GpuArray dy = Gpu("dy", dy_in, 1, x.dtype, GatedShapeOf(x.shape)), dx = Gpu("dx", dx_in, 1, x.dtype, x.shape);
  WithStorageType(x.dtype, [&](auto type) {
    using T = decltype(type);
    CheckLaunch(activation::LaunchGatedActivationGrad(StreamOf(stream), act, Ptr<T>(dy), Ptr<T>(x), Rows(x),
                                                      LastDim(dy), Ptr<T>(dx)),
                "gated_activation grad");
  });
}

}  // namespace

void BindActivationCuda(py::module_& cuda) {
  cuda.def("bias_activation", &BiasActivation, py::arg("x"), py::arg("bias"), py::arg("y"),
           py::arg("activation") = "gelu", py::arg("stream") = 0, "activation(x + bias) into y.");
  cuda.def("bias_activation_grad", &BiasActivationGrad, py::arg("dy"), py::arg("x"), py::arg("bias"), py::arg("dx"),
           py::arg("dbias"), py::arg("activation") = "gelu", py::arg("stream") = 0,
           "bias_activation's gradient into dx, dbias.");
  cuda.def("gated_activation", &Gated, py::arg("x"), py::arg("y"), py::arg("activation") = "silu",
           py::arg("stream") = 0, "activation(a) * b into y.");
  cuda.def("gated_activation_grad", &GatedGrad, py::arg("dy"), py::arg("x"), py::arg("dx"),
           py::arg("activation") = "silu", py::arg("stream") = 0, "gated_activation's gradient into dx.");
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit
