// The norm family's CPU kernels over NumPy arrays.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/common/accumulate.h"
#include "kernels/norm/norm_cpu.h"
#include "kernels/norm/norm_rules.h"
#include "kernels/python/arrays.h"
#include "kernels/python/bindings.h"

namespace tfkit {
namespace kernels {
namespace python {
namespace {

Shape StatsShape(const py::array& x) {
  const Shape shape = ShapeOf(x);
  return Shape(shape.begin(), shape.end() - 1);
}

template <bool kCenter>
py::tuple Forward(py::handle x_in, py::handle gamma_in, py::handle beta_in, double epsilon) {
  const py::array x = Checked("x", x_in, 1);
  const int64_t cols = LastDim(x), rows = Rows(x);
  const py::array gamma = CheckedShape("gamma", gamma_in, {cols}, x.dtype());
  const py::array beta = kCenter ? CheckedShape("beta", beta_in, {cols}, x.dtype()) : gamma;
  const float eps = CheckedEpsilon(epsilon);
  return WithFloatType(x.dtype(), [&](auto type) {
    using T = decltype(type);
    py::array y = Empty(ShapeOf(x), x.dtype()), mean = Empty(StatsShape(x), x.dtype());
    py::array rstd = Empty(StatsShape(x), x.dtype());
    const T *xp = In<T>(x), *gp = In<T>(gamma), *bp = In<T>(beta);
    T *yp = Out<T>(y), *mp = Out<T>(mean), *rp = Out<T>(rstd);
    {
      py::gil_scoped_release unlocked;
      norm::NormForwardRows<kCenter>(xp, gp, bp, cols, static_cast<T>(eps), 0, rows, yp, mp, rp);
    }
    return kCenter ? py::tuple(py::make_tuple(y, mean, rstd)) : py::tuple(py::make_tuple(y, rstd));
  });
}

// LayerNorm: (dy, x, gamma, mean, rstd, dmean, drstd); RMSNorm: mean and
// dmean are not used.
template <bool kCenter>
py::tuple Backward(py::handle dy_in, py::handle x_in, py::handle gamma_in, py::handle mean_in, py::handle rstd_in,
                   py::handle dmean_in, py::handle drstd_in) {
  const py::array x = Checked("x", x_in, 1);
  const int64_t cols = LastDim(x), rows = Rows(x);
  const py::array dy = CheckedShape("dy", dy_in, ShapeOf(x), x.dtype());
  const py::array gamma = CheckedShape("gamma", gamma_in, {cols}, x.dtype());
  const py::array rstd = CheckedShape("rstd", rstd_in, StatsShape(x), x.dtype());
  const py::array drstd = CheckedShape("drstd", drstd_in, StatsShape(x), x.dtype());
  const py::array mean = kCenter ? CheckedShape("mean", mean_in, StatsShape(x), x.dtype()) : rstd;
  const py::array dmean = kCenter ? CheckedShape("dmean", dmean_in, StatsShape(x), x.dtype()) : rstd;
  return WithFloatType(x.dtype(), [&](auto type) {
    using T = decltype(type);
    using W = Wide<T>;
    py::array dx = Empty(ShapeOf(x), x.dtype()), dgamma = Empty({cols}, x.dtype()), dbeta = Empty({cols}, x.dtype());
    const T *dyp = In<T>(dy), *xp = In<T>(x), *gp = In<T>(gamma), *mp = In<T>(mean), *rp = In<T>(rstd);
    const T *dmp = In<T>(dmean), *drp = In<T>(drstd);
    T* dxp = Out<T>(dx);
    T* const outs[] = {Out<T>(dgamma), Out<T>(dbeta)};
    {
      py::gil_scoped_release unlocked;
      std::vector<W> workspace(ColumnSumsWorkspaceSize(rows, cols, 2));
      SumColumnsInRowBlocks(
          rows, cols, kCenter ? 2 : 1, 0, workspace.data(), Serially(),
          [&](int64_t begin, int64_t end, W* partial, int64_t stride) {
            norm::NormBackwardRows<kCenter>(dyp, xp, gp, mp, rp, dmp, drp, cols, begin, end, dxp, partial,
                                            kCenter ? partial + stride : nullptr);
          },
          outs);
    }
    return kCenter ? py::tuple(py::make_tuple(dx, dgamma, dbeta)) : py::tuple(py::make_tuple(dx, dgamma));
  });
}

}  // namespace

void BindNorm(py::module_& m) {
  m.def("layer_norm", &Forward<true>, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("epsilon") = 1e-5,
        "LayerNorm over the last axis: (y, mean, rstd).");
  m.def(
      "rms_norm",
      [](py::handle x, py::handle gamma, double epsilon) { return Forward<false>(x, gamma, py::none(), epsilon); },
      py::arg("x"), py::arg("gamma"), py::arg("epsilon") = 1e-6, "RMSNorm over the last axis: (y, rstd).");
  m.def("layer_norm_grad", &Backward<true>, py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("mean"),
        py::arg("rstd"), py::arg("dmean"), py::arg("drstd"), "LayerNorm's gradient: (dx, dgamma, dbeta).");
  m.def(
      "rms_norm_grad",
      [](py::handle dy, py::handle x, py::handle gamma, py::handle rstd, py::handle drstd) {
        return Backward<false>(dy, x, gamma, py::none(), rstd, py::none(), drstd);
      },
      py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("rstd"), py::arg("drstd"),
      "RMSNorm's gradient: (dx, dgamma).");
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit
