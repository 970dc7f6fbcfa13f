// The resampling family's CUDA launchers over GPU arrays (outputs given by the caller).
#include <string>

#include "kernels/python/bindings.h"
#include "kernels/python/cuda_arrays.h"
#include "kernels/resampling/resampling_gpu.h"

namespace tfkit {
namespace kernels {
namespace python {
namespace {

void Resample(py::handle data_in, py::handle warp_in, py::handle out_in, const std::string& boundary,
              uintptr_t stream) {
  const GpuArray data = Gpu("data", data_in, 4);
  const GpuArray warp = Gpu("warp", warp_in, 2, data.dtype);
  const resampling::ResamplerShape shape = ResamplerShapeOf(data.shape, warp.shape, boundary);
  const GpuArray out = Gpu("out", out_in, 2, data.dtype, SamplesOf(data.shape, warp.shape));
  WithStorageType(data.dtype, [&](auto type) {
    using T = decltype(type);
    CheckLaunch(resampling::LaunchResample(StreamOf(stream), Ptr<T>(data), Ptr<T>(warp), shape, Ptr<T>(out)),
                "resampler");
  });
}

void ResampleGrad(py::handle data_in, py::handle warp_in, py::handle grad_in, py::handle grad_data_in,
                  py::handle grad_warp_in, const std::string& boundary, bool deterministic, uintptr_t stream) {
  const GpuArray data = Gpu("data", data_in, 4);
  const GpuArray warp = Gpu("warp", warp_in, 2, data.dtype);
  const resampling::ResamplerShape shape = ResamplerShapeOf(data.shape, warp.shape, boundary);
  const GpuArray grad = Gpu("grad", grad_in, 2, data.dtype, SamplesOf(data.shape, warp.shape));
  const GpuArray grad_data = Gpu("grad_data", grad_data_in, 4, data.dtype, data.shape);
  const GpuArray grad_warp = Gpu("grad_warp", grad_warp_in, 2, data.dtype, warp.shape);
  WithStorageType(data.dtype, [&](auto type) {
    using T = decltype(type);
    using U = Acc<T>;
    Workspace<U> sums(data.size(), StreamOf(stream));
    CheckLaunch(resampling::LaunchResampleGrad(StreamOf(stream), Ptr<T>(data), Ptr<T>(warp), Ptr<T>(grad), shape,
                                               deterministic, sums.ptr, Ptr<T>(grad_data), Ptr<T>(grad_warp)),
                "resampler_grad");
  });
}

}  // namespace

void BindResamplingCuda(py::module_& cuda) {
  cuda.def("resampler", &Resample, py::arg("data"), py::arg("warp"), py::arg("out"), py::arg("boundary") = "zeros",
           py::arg("stream") = 0, "Bilinear samples of data at warp into out.");
  cuda.def("resampler_grad", &ResampleGrad, py::arg("data"), py::arg("warp"), py::arg("grad"), py::arg("grad_data"),
           py::arg("grad_warp"), py::arg("boundary") = "zeros", py::arg("deterministic") = false,
           py::arg("stream") = 0,
           "resampler's gradients into grad_data and grad_warp; deterministic: the data gradient in a fixed order.");
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit
