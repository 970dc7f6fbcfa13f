// The deformable convolution family's CPU kernels over NumPy arrays.
#include <pybind11/stl.h>

#include <string>
#include <tuple>
#include <vector>

#include "kernels/deform_conv/deform_conv_cpu.h"
#include "kernels/python/arrays.h"
#include "kernels/python/bindings.h"

namespace tfkit {
namespace kernels {
namespace python {

namespace {

// The four inputs, checked: x's float dtype for all, rank 4 each.
struct Arrays {
  py::array x, offsets, mask, kernel;
};

Arrays CheckedInputs(py::handle x_in, py::handle offsets_in, py::handle mask_in, py::handle kernel_in) {
  Arrays a;
  a.x = Checked("x", x_in, 0);
  const py::dtype dtype = a.x.dtype();
  a.offsets = Checked("offsets", offsets_in, 0, &dtype);
  a.mask = Checked("mask", mask_in, 0, &dtype);
  a.kernel = Checked("kernel", kernel_in, 0, &dtype);
  return a;
}

deform_conv::DeformConvShape ShapeOfArrays(const Arrays& a, const std::vector<int64_t>& strides,
                                           const std::string& padding, const std::vector<int64_t>& dilations,
                                           int64_t groups, int64_t offset_groups, Shape* output) {
  return DeformConvShapeOf(ShapeOf(a.x), ShapeOf(a.offsets), ShapeOf(a.mask), ShapeOf(a.kernel), strides, padding,
                           dilations, groups, offset_groups, output);
}

py::array DeformConv(py::handle x_in, py::handle offsets_in, py::handle mask_in, py::handle kernel_in,
                     const std::vector<int64_t>& strides, const std::string& padding,
                     const std::vector<int64_t>& dilations, int64_t groups, int64_t offset_groups) {
  const Arrays a = CheckedInputs(x_in, offsets_in, mask_in, kernel_in);
  Shape output;
  const deform_conv::DeformConvShape shape =
      ShapeOfArrays(a, strides, padding, dilations, groups, offset_groups, &output);
  return WithFloatType(a.x.dtype(), [&](auto type) {
    using T = decltype(type);
    py::array out = Empty(output, a.x.dtype());
    const T *xp = In<T>(a.x), *op = In<T>(a.offsets), *mp = In<T>(a.mask), *kp = In<T>(a.kernel);
    T* yp = Out<T>(out);
    py::gil_scoped_release unlocked;
    if (shape.rows() * shape.filters > 0) deform_conv::DeformConv<T, Acc<T>>(xp, op, mp, kp, shape, Serially(), yp);
    return out;
  });
}

py::tuple DeformConvGrad(py::handle x_in, py::handle offsets_in, py::handle mask_in, py::handle kernel_in,
                         py::handle grad_in, const std::vector<int64_t>& strides, const std::string& padding,
                         const std::vector<int64_t>& dilations, int64_t groups, int64_t offset_groups) {
  const Arrays a = CheckedInputs(x_in, offsets_in, mask_in, kernel_in);
  Shape output;
  const deform_conv::DeformConvShape shape =
      ShapeOfArrays(a, strides, padding, dilations, groups, offset_groups, &output);
  const py::array grad = CheckedShape("grad", grad_in, output, a.x.dtype());
  return WithFloatType(a.x.dtype(), [&](auto type) {
    using T = decltype(type);
    py::array gx = Empty(ShapeOf(a.x), a.x.dtype()), go = Empty(ShapeOf(a.offsets), a.x.dtype());
    py::array gm = Empty(ShapeOf(a.mask), a.x.dtype()), gk = Empty(ShapeOf(a.kernel), a.x.dtype());
    const T *xp = In<T>(a.x), *op = In<T>(a.offsets), *mp = In<T>(a.mask), *kp = In<T>(a.kernel);
    const T* gp = In<T>(grad);
    T *gxp = Out<T>(gx), *gop = Out<T>(go), *gmp = Out<T>(gm), *gkp = Out<T>(gk);
    {
      py::gil_scoped_release unlocked;
      const deform_conv::GradWorkspace sizes = deform_conv::DeformConvGradWorkspace<Acc<T>>(shape);
      std::vector<Acc<T>> wave(sizes.wave);
      std::vector<Wide<Acc<T>>> sums(sizes.sums);
      deform_conv::DeformConvGrad<T, Acc<T>>(xp, op, mp, kp, gp, shape, Serially(), wave.data(), sums.data(), gxp,
                                             gop, gmp, gkp);
    }
    return py::make_tuple(gx, go, gm, gk);
  });
}

}  // namespace

void BindDeformConv(py::module_& m) {
  m.attr("PADDINGS") = NameTuple(deform_conv::kPaddingNames);
  m.def("deform_conv2d", &DeformConv, py::arg("x"), py::arg("offsets"), py::arg("mask"), py::arg("kernel"),
        py::arg("strides") = std::vector<int64_t>{1, 1}, py::arg("padding") = "valid",
        py::arg("dilations") = std::vector<int64_t>{1, 1}, py::arg("groups") = 1, py::arg("offset_groups") = 1,
        "Deformable convolution v2 of x [batch, height, width, channels] (NHWC, kernel [kh, kw, C / groups, F]).");
  m.def("deform_conv2d_grad", &DeformConvGrad, py::arg("x"), py::arg("offsets"), py::arg("mask"), py::arg("kernel"),
        py::arg("grad"), py::arg("strides") = std::vector<int64_t>{1, 1}, py::arg("padding") = "valid",
        py::arg("dilations") = std::vector<int64_t>{1, 1}, py::arg("groups") = 1, py::arg("offset_groups") = 1,
        "deform_conv2d's gradients (grad_x, grad_offsets, grad_mask, grad_kernel) for the output gradient grad.");
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit
