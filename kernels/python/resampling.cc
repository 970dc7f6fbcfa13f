// The resampling family's CPU kernels over NumPy arrays.
#include <string>
#include <tuple>

#include "kernels/python/arrays.h"
#include "kernels/python/bindings.h"
#include "kernels/resampling/resampling_cpu.h"

namespace tfkit {
namespace kernels {
namespace python {

resampling::ResamplerShape ResamplerShapeOf(const Shape& data, const Shape& warp, const std::string& boundary) {
  if (boundary != "zeros" && boundary != "clamp") {
    throw py::value_error("boundary must be \"zeros\" or \"clamp\", got \"" + boundary + "\"");
  }
  if (data.size() != 4) throw py::value_error("data must have rank 4, got shape " + ShapeString(data));
  if (warp.size() < 2 || warp.back() != 2) {
    throw py::value_error("warp must have shape (batch, ..., 2), got " + ShapeString(warp));
  }
  if (warp[0] != data[0]) {
    throw py::value_error("warp's batch dimension must equal data's, got " + ShapeString(warp) + " and " +
                          ShapeString(data));
  }
  resampling::ResamplerShape shape;
  shape.batch = data[0];
  shape.height = data[1];
  shape.width = data[2];
  shape.channels = data[3];
  shape.points = 1;
  for (size_t i = 1; i + 1 < warp.size(); ++i) shape.points *= warp[i];
  shape.boundary = boundary == "clamp" ? resampling::Boundary::kClamp : resampling::Boundary::kZeros;
  return shape;
}

Shape SamplesShape(const Shape& warp, int64_t channels) {
  Shape samples = warp;
  samples.back() = channels;
  return samples;
}

namespace {

py::array Resample(py::handle data_in, py::handle warp_in, const std::string& boundary) {
  const py::array data = Checked("data", data_in, 4);
  const py::dtype dtype = data.dtype();
  const py::array warp = Checked("warp", warp_in, 2, &dtype);
  const resampling::ResamplerShape shape = ResamplerShapeOf(ShapeOf(data), ShapeOf(warp), boundary);
  return WithFloatType(dtype, [&](auto type) {
    using T = decltype(type);
    py::array out = Empty(SamplesShape(ShapeOf(warp), shape.channels), dtype);
    const T *dp = In<T>(data), *wp = In<T>(warp);
    T* op = Out<T>(out);
    py::gil_scoped_release unlocked;
    resampling::ResampleRows<T, Acc<T>>(dp, wp, shape, 0, shape.batch * shape.points, op);
    return out;
  });
}

std::tuple<py::array, py::array> ResampleGrad(py::handle data_in, py::handle warp_in, py::handle grad_in,
                                              const std::string& boundary) {
  const py::array data = Checked("data", data_in, 4);
  const py::dtype dtype = data.dtype();
  const py::array warp = Checked("warp", warp_in, 2, &dtype);
  const resampling::ResamplerShape shape = ResamplerShapeOf(ShapeOf(data), ShapeOf(warp), boundary);
  const py::array grad = CheckedShape("grad", grad_in, SamplesShape(ShapeOf(warp), shape.channels), dtype);
  return WithFloatType(dtype, [&](auto type) {
    using T = decltype(type);
    py::array grad_data = Empty(ShapeOf(data), dtype), grad_warp = Empty(ShapeOf(warp), dtype);
    const T *dp = In<T>(data), *wp = In<T>(warp), *gp = In<T>(grad);
    T *gdp = Out<T>(grad_data), *gwp = Out<T>(grad_warp);
    {
      py::gil_scoped_release unlocked;
      resampling::WarpGradRows<T, Acc<T>>(dp, wp, gp, shape, 0, shape.batch * shape.points, gwp);
      resampling::DataGradUnitRange<T, Acc<T>>(wp, gp, shape, 0, resampling::DataGradUnits(shape), gdp);
    }
    return std::make_tuple(grad_data, grad_warp);
  });
}

}  // namespace

void BindResampling(py::module_& m) {
  m.def("resampler", &Resample, py::arg("data"), py::arg("warp"), py::arg("boundary") = "zeros",
        "Bilinear samples of data [batch, height, width, channels] at warp [batch, ..., 2] (x, y).");
  m.def("resampler_grad", &ResampleGrad, py::arg("data"), py::arg("warp"), py::arg("grad"),
        py::arg("boundary") = "zeros", "resampler's gradients (grad_data, grad_warp) for the output gradient grad.");
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit
