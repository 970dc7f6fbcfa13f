// The deformable convolution family's CUDA launchers over GPU arrays (outputs given by the caller).
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "kernels/deform_conv/deform_conv_gpu.h"
#include "kernels/python/bindings.h"
#include "kernels/python/cuda_arrays.h"

namespace tfkit {
namespace kernels {
namespace python {
namespace {

struct GpuInputs {
  GpuArray x, offsets, mask, kernel;
};

GpuInputs Inputs(py::handle x, py::handle offsets, py::handle mask, py::handle kernel) {
  GpuInputs in;
  in.x = Gpu("x", x, 0);
  in.offsets = Gpu("offsets", offsets, 0, in.x.dtype);
  in.mask = Gpu("mask", mask, 0, in.x.dtype);
  in.kernel = Gpu("kernel", kernel, 0, in.x.dtype);
  return in;
}

deform_conv::DeformConvShape ShapeOfInputs(const GpuInputs& in, const std::vector<int64_t>& strides,
                                           const std::string& padding, const std::vector<int64_t>& dilations,
                                           int64_t groups, int64_t offset_groups, Shape* output) {
  return DeformConvShapeOf(in.x.shape, in.offsets.shape, in.mask.shape, in.kernel.shape, strides, padding, dilations,
                           groups, offset_groups, output);
}

void DeformConv(py::handle x, py::handle offsets, py::handle mask, py::handle kernel, py::handle out_in,
                const std::vector<int64_t>& strides, const std::string& padding,
                const std::vector<int64_t>& dilations, int64_t groups, int64_t offset_groups, uintptr_t stream) {
  const GpuInputs in = Inputs(x, offsets, mask, kernel);
  Shape output;
  const deform_conv::DeformConvShape shape =
      ShapeOfInputs(in, strides, padding, dilations, groups, offset_groups, &output);
  const GpuArray out = Gpu("out", out_in, 0, in.x.dtype, output);
  WithStorageType(in.x.dtype, [&](auto type) {
    using T = decltype(type);
    Workspace<Acc<T>> workspace(deform_conv::DeformConvWorkspaceSize(shape), StreamOf(stream));
    CheckLaunch(deform_conv::LaunchDeformConv(StreamOf(stream), Ptr<T>(in.x), Ptr<T>(in.offsets), Ptr<T>(in.mask),
                                              Ptr<T>(in.kernel), shape, workspace.ptr, Ptr<T>(out)),
                "deform_conv2d");
  });
}

void DeformConvGrad(py::handle x, py::handle offsets, py::handle mask, py::handle kernel, py::handle grad_in,
                    py::handle grad_x_in, py::handle grad_offsets_in, py::handle grad_mask_in,
                    py::handle grad_kernel_in, const std::vector<int64_t>& strides, const std::string& padding,
                    const std::vector<int64_t>& dilations, int64_t groups, int64_t offset_groups, bool deterministic,
                    uintptr_t stream) {
  const GpuInputs in = Inputs(x, offsets, mask, kernel);
  Shape output;
  const deform_conv::DeformConvShape shape =
      ShapeOfInputs(in, strides, padding, dilations, groups, offset_groups, &output);
  const GpuArray grad = Gpu("grad", grad_in, 0, in.x.dtype, output);
  const GpuArray grad_x = Gpu("grad_x", grad_x_in, 0, in.x.dtype, in.x.shape);
  const GpuArray grad_offsets = Gpu("grad_offsets", grad_offsets_in, 0, in.x.dtype, in.offsets.shape);
  const GpuArray grad_mask = Gpu("grad_mask", grad_mask_in, 0, in.x.dtype, in.mask.shape);
  const GpuArray grad_kernel = Gpu("grad_kernel", grad_kernel_in, 0, in.x.dtype, in.kernel.shape);
  WithStorageType(in.x.dtype, [&](auto type) {
    using T = decltype(type);
    Workspace<Acc<T>> workspace(deform_conv::DeformConvGradWorkspaceSize(shape), StreamOf(stream));
    CheckLaunch(deform_conv::LaunchDeformConvGrad(StreamOf(stream), Ptr<T>(in.x), Ptr<T>(in.offsets),
                                                  Ptr<T>(in.mask), Ptr<T>(in.kernel), Ptr<T>(grad), shape,
                                                  deterministic, workspace.ptr, Ptr<T>(grad_x), Ptr<T>(grad_offsets),
                                                  Ptr<T>(grad_mask), Ptr<T>(grad_kernel)),
                "deform_conv2d_grad");
  });
}

}  // namespace

void BindDeformConvCuda(py::module_& cuda) {
  cuda.def("deform_conv2d", &DeformConv, py::arg("x"), py::arg("offsets"), py::arg("mask"), py::arg("kernel"),
           py::arg("out"), py::arg("strides") = std::vector<int64_t>{1, 1}, py::arg("padding") = "valid",
           py::arg("dilations") = std::vector<int64_t>{1, 1}, py::arg("groups") = 1, py::arg("offset_groups") = 1,
           py::arg("stream") = 0, "Deformable convolution v2 of x into out.");
  cuda.def("deform_conv2d_grad", &DeformConvGrad, py::arg("x"), py::arg("offsets"), py::arg("mask"),
           py::arg("kernel"), py::arg("grad"), py::arg("grad_x"), py::arg("grad_offsets"), py::arg("grad_mask"),
           py::arg("grad_kernel"), py::arg("strides") = std::vector<int64_t>{1, 1}, py::arg("padding") = "valid",
           py::arg("dilations") = std::vector<int64_t>{1, 1}, py::arg("groups") = 1, py::arg("offset_groups") = 1,
           py::arg("deterministic") = false, py::arg("stream") = 0,
           "deform_conv2d's gradients into the grad_* arrays; deterministic: the x gradient in a fixed order.");
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit
