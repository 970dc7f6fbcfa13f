// The activation family's CPU kernels over NumPy arrays.
#include <string>
#include <vector>

#include "kernels/activation/activation_cpu.h"
#include "kernels/common/accumulate.h"
#include "kernels/python/arrays.h"
#include "kernels/python/bindings.h"

namespace tfkit {
namespace kernels {
namespace python {
namespace {

using activation::Activation;
using activation::WithActivation;

py::array BiasActivation(py::handle x_in, py::handle bias_in, const std::string& name) {
  const Activation act = ActivationNamed(name);
  const py::array x = Checked("x", x_in, 1);
  const int64_t cols = LastDim(x), rows = Rows(x);
  const py::array bias = CheckedShape("bias", bias_in, {cols}, x.dtype());
  return WithFloatType(x.dtype(), [&](auto type) {
    using T = decltype(type);
    py::array y = Empty(ShapeOf(x), x.dtype());
    const T *xp = In<T>(x), *bp = In<T>(bias);
    T* yp = Out<T>(y);
    py::gil_scoped_release unlocked;
    WithActivation(act, [&](auto a) { activation::BiasActivationRows<decltype(a)::value>(xp, bp, cols, 0, rows, yp); });
    return y;
  });
}

py::tuple BiasActivationGrad(py::handle dy_in, py::handle x_in, py::handle bias_in, const std::string& name) {
  const Activation act = ActivationNamed(name);
  const py::array x = Checked("x", x_in, 1);
  const int64_t cols = LastDim(x), rows = Rows(x);
  const py::array dy = CheckedShape("dy", dy_in, ShapeOf(x), x.dtype());
  const py::array bias = CheckedShape("bias", bias_in, {cols}, x.dtype());
  return WithFloatType(x.dtype(), [&](auto type) {
    using T = decltype(type);
    using W = Wide<T>;
    py::array dx = Empty(ShapeOf(x), x.dtype()), dbias = Empty({cols}, x.dtype());
    const T *dyp = In<T>(dy), *xp = In<T>(x), *bp = In<T>(bias);
    T* dxp = Out<T>(dx);
    T* const outs[] = {Out<T>(dbias)};
    {
      py::gil_scoped_release unlocked;
      std::vector<W> workspace(ColumnSumsWorkspaceSize(rows, cols, 1));
      WithActivation(act, [&](auto a) {
        SumColumnsInRowBlocks(
            rows, cols, 1, 0, workspace.data(), Serially(),
            [&](int64_t begin, int64_t end, W* partial, int64_t) {
              activation::BiasActivationGradRows<decltype(a)::value>(dyp, xp, bp, cols, begin, end, dxp, partial);
            },
            outs);
      });
    }
    return py::make_tuple(dx, dbias);
  });
}

py::array Gated(py::handle x_in, const std::string& name) {
  const Activation act = ActivationNamed(name);
  const py::array x = Checked("x", x_in, 1);
  const Shape y_shape = GatedShapeOf(ShapeOf(x));
  const int64_t half = y_shape.back(), rows = Rows(x);
  return WithFloatType(x.dtype(), [&](auto type) {
    using T = decltype(type);
    py::array y = Empty(y_shape, x.dtype());
    const T* xp = In<T>(x);
    T* yp = Out<T>(y);
    py::gil_scoped_release unlocked;
    WithActivation(act, [&](auto a) { activation::GatedActivationRows<decltype(a)::value>(xp, half, 0, rows, yp); });
    return y;
  });
}

py::array GatedGrad(py::handle dy_in, py::handle x_in, const std::string& name) {
  const Activation act = ActivationNamed(name);
  const py::array x = Checked("x", x_in, 1);
  const Shape y_shape = GatedShapeOf(ShapeOf(x));
  const int64_t half = y_shape.back(), rows = Rows(x);
  const py::array dy = CheckedShape("dy", dy_in, y_shape, x.dtype());
  return WithFloatType(x.dtype(), [&](auto type) {
    using T = decltype(type);
    py::array dx = Empty(ShapeOf(x), x.dtype());
    const T *dyp = In<T>(dy), *xp = In<T>(x);
    T* dxp = Out<T>(dx);
    py::gil_scoped_release unlocked;
    WithActivation(act, [&](auto a) {
      activation::GatedActivationGradRows<decltype(a)::value>(dyp, xp, half, 0, rows, dxp);
    });
    return dx;
  });
}

}  // namespace

void BindActivation(py::module_& m) {
  m.def("bias_activation", &BiasActivation, py::arg("x"), py::arg("bias"), py::arg("activation") = "gelu",
        "activation(x + bias), bias along the last axis.");
  m.def("bias_activation_grad", &BiasActivationGrad, py::arg("dy"), py::arg("x"), py::arg("bias"),
        py::arg("activation") = "gelu", "bias_activation's gradient: (dx, dbias).");
  m.def("gated_activation", &Gated, py::arg("x"), py::arg("activation") = "silu",
        "activation(a) * b for x = [a, b] split in halves on the last axis.");
  m.def("gated_activation_grad", &GatedGrad, py::arg("dy"), py::arg("x"), py::arg("activation") = "silu",
        "gated_activation's gradient: dx.");
  m.attr("ACTIVATIONS") = NameTuple(activation::kActivationNames);
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit
