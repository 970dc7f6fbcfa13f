// The norm family's CUDA launchers over GPU arrays (outputs given by the caller).
#include "kernels/norm/norm_gpu.h"
#include "kernels/norm/norm_rules.h"
#include "kernels/python/bindings.h"
#include "kernels/python/cuda_arrays.h"

namespace tfkit {
namespace kernels {
namespace python {
namespace {

template <bool kCenter>
void Forward(py::handle x_in, py::handle gamma_in, py::handle beta_in, py::handle y_in, py::handle mean_in,
             py::handle rstd_in, double epsilon, uintptr_t stream) {
  const GpuArray x = Gpu("x", x_in, 1);
  const int64_t cols = LastDim(x), rows = Rows(x);
  const std::string acc = AccDtype(x.dtype);
  const GpuArray gamma = Gpu("gamma", gamma_in, 1, x.dtype, {cols});
  const GpuArray beta = kCenter ? Gpu("beta", beta_in, 1, x.dtype, {cols}) : gamma;
  const GpuArray y = Gpu("y", y_in, 1, x.dtype, x.shape);
  const GpuArray rstd = Gpu("rstd", rstd_in, 0, acc, StatsShape(x));
  const GpuArray mean = kCenter ? Gpu("mean", mean_in, 0, acc, StatsShape(x)) : rstd;
  const float eps = CheckedEpsilon(epsilon);
  WithStorageType(x.dtype, [&](auto type) {
    using T = decltype(type);
    using U = Acc<T>;
    CheckLaunch(norm::LaunchNormForward(StreamOf(stream), kCenter, Ptr<T>(x), Ptr<T>(gamma), Ptr<T>(beta), rows, cols,
                                        static_cast<U>(eps), Ptr<T>(y), kCenter ? Ptr<U>(mean) : nullptr,
                                        Ptr<U>(rstd)),
                "norm forward");
  });
}

template <bool kCenter>
void Backward(py::handle dy_in, py::handle x_in, py::handle gamma_in, py::handle mean_in, py::handle rstd_in,
              py::handle dmean_in, py::handle drstd_in, py::handle dx_in, py::handle dgamma_in, py::handle dbeta_in,
              uintptr_t stream) {
  const GpuArray x = Gpu("x", x_in, 1);
  const int64_t cols = LastDim(x), rows = Rows(x);
  const std::string acc = AccDtype(x.dtype);
  const GpuArray dy = Gpu("dy", dy_in, 1, x.dtype, x.shape), dx = Gpu("dx", dx_in, 1, x.dtype, x.shape);
  const GpuArray gamma = Gpu("gamma", gamma_in, 1, x.dtype, {cols});
  const GpuArray dgamma = Gpu("dgamma", dgamma_in, 1, x.dtype, {cols});
  const GpuArray dbeta = kCenter ? Gpu("dbeta", dbeta_in, 1, x.dtype, {cols}) : dgamma;
  const GpuArray rstd = Gpu("rstd", rstd_in, 0, acc, StatsShape(x));
  const GpuArray drstd = Gpu("drstd", drstd_in, 0, acc, StatsShape(x));
  const GpuArray mean = kCenter ? Gpu("mean", mean_in, 0, acc, StatsShape(x)) : rstd;
  const GpuArray dmean = kCenter ? Gpu("dmean", dmean_in, 0, acc, StatsShape(x)) : rstd;
  WithStorageType(x.dtype, [&](auto type) {
    using T = decltype(type);
    using U = Acc<T>;
    Workspace<Wide<U>> workspace(norm::NormBackwardWorkspaceSize(rows, cols), StreamOf(stream));
    CheckLaunch(norm::LaunchNormBackward(StreamOf(stream), kCenter, Ptr<T>(dy), Ptr<T>(x), Ptr<T>(gamma),
                                         kCenter ? Ptr<U>(mean) : nullptr, Ptr<U>(rstd),
                                         kCenter ? Ptr<U>(dmean) : nullptr, Ptr<U>(drstd), rows, cols,
                                         workspace.ptr, Ptr<T>(dx), Ptr<T>(dgamma),
                                         kCenter ? Ptr<T>(dbeta) : nullptr),
                "norm backward");
  });
}

}  // namespace

void BindNormCuda(py::module_& cuda) {
  cuda.def("layer_norm", &Forward<true>, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("y"),
           py::arg("mean"), py::arg("rstd"), py::arg("epsilon") = 1e-5, py::arg("stream") = 0,
           "LayerNorm into y, mean, rstd (mean and rstd in float32, float64 for float64).");
  cuda.def(
      "rms_norm",
      [](py::handle x, py::handle gamma, py::handle y, py::handle rstd, double epsilon, uintptr_t stream) {
        Forward<false>(x, gamma, py::none(), y, py::none(), rstd, epsilon, stream);
      },
      py::arg("x"), py::arg("gamma"), py::arg("y"), py::arg("rstd"), py::arg("epsilon") = 1e-6, py::arg("stream") = 0,
      "RMSNorm into y, rstd.");
  cuda.def("layer_norm_grad", &Backward<true>, py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("mean"),
           py::arg("rstd"), py::arg("dmean"), py::arg("drstd"), py::arg("dx"), py::arg("dgamma"), py::arg("dbeta"),
           py::arg("stream") = 0, "LayerNorm's gradient into dx, dgamma, dbeta.");
  cuda.def(
      "rms_norm_grad",
      [](py::handle dy, py::handle x, py::handle gamma, py::handle rstd, py::handle drstd, py::handle dx,
         py::handle dgamma, uintptr_t stream) {
        Backward<false>(dy, x, gamma, py::none(), rstd, py::none(), drstd, dx, dgamma, py::none(), stream);
      },
      py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("rstd"), py::arg("drstd"), py::arg("dx"),
      py::arg("dgamma"), py::arg("stream") = 0, "RMSNorm's gradient into dx, dgamma.");
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit
