// The resampling family's CPU kernels over NumPy arrays.
#include <string>
#include <tuple>

#include "kernels/python/arrays.h"
#include "kernels/python/bindings.h"
#include "kernels/resampling/resampling_cpu.h"

namespace tfkit {
namespace kernels {
namespace python {

namespace {

py::array Resample(py::handle data_in, py::handle warp_in, const std::string& boundary) {
  const py::array data = Checked("data", data_in, 4);
  const py::dtype dtype = data.dtype();
  const py::array warp = Checked("warp", warp_in, 2, &dtype);
  const resampling::ResamplerShape shape = ResamplerShapeOf(ShapeOf(data), ShapeOf(warp), boundary);
  return WithFloatType(dtype, [&](auto type) {
    using T = decltype(type);
    py::array out = Empty(SamplesOf(ShapeOf(data), ShapeOf(warp)), dtype);
    const T *dp = In<T>(data), *wp = In<T>(warp);
    T* op = Out<T>(out);
    py::gil_scoped_release unlocked;
    resampling::ResampleRows<T, Acc<T>>(dp, wp, shape, 0, shape.rows, op);
    return out;
  });
}

std::tuple<py::array, py::array> ResampleGrad(py::handle data_in, py::handle warp_in, py::handle grad_in,
                                              const std::string& boundary) {
  const py::array data = Checked("data", data_in, 4);
  const py::dtype dtype = data.dtype();
  const py::array warp = Checked("warp", warp_in, 2, &dtype);
  const resampling::ResamplerShape shape = ResamplerShapeOf(ShapeOf(data), ShapeOf(warp), boundary);
  const py::array grad = CheckedShape("grad", grad_in, SamplesOf(ShapeOf(data), ShapeOf(warp)), dtype);
  return WithFloatType(dtype, [&](auto type) {
    using T = decltype(type);
    py::array grad_data = Empty(ShapeOf(data), dtype), grad_warp = Empty(ShapeOf(warp), dtype);
    const T *dp = In<T>(data), *wp = In<T>(warp), *gp = In<T>(grad);
    T *gdp = Out<T>(grad_data), *gwp = Out<T>(grad_warp);
    {
      py::gil_scoped_release unlocked;
      resampling::WarpGradRows<T, Acc<T>>(dp, wp, gp, shape, 0, shape.rows, gwp);
      resampling::DataGradUnitRange<T, Acc<T>>(wp, gp, shape, 0, resampling::DataGradUnits(shape), gdp);
    }
    return std::make_tuple(grad_data, grad_warp);
  });
}

}  // namespace

void BindResampling(py::module_& m) {
  m.attr("BOUNDARIES") = NameTuple(resampling::kBoundaryNames);
  m.def("resampler", &Resample, py::arg("data"), py::arg("warp"), py::arg("boundary") = "zeros",
        "Bilinear samples of data [batch, height, width, channels] at warp [batch, ..., 2] (x, y).");
  m.def("resampler_grad", &ResampleGrad, py::arg("data"), py::arg("warp"), py::arg("grad"),
        py::arg("boundary") = "zeros", "resampler's gradients (grad_data, grad_warp) for the output gradient grad.");
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit
