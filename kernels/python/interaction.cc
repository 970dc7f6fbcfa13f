// The interaction family's CPU kernels over NumPy arrays.
#include "kernels/interaction/interaction_cpu.h"
#include "kernels/python/arrays.h"
#include "kernels/python/bindings.h"

namespace tfkit {
namespace kernels {
namespace python {

namespace {

py::array Interact(py::handle features_in, bool self_interaction) {
  const py::array features = Checked("features", features_in, 0);
  const interaction::InteractionShape shape = InteractionShapeOf(ShapeOf(features), self_interaction);
  return WithFloatType(features.dtype(), [&](auto type) {
    using T = decltype(type);
    py::array out = Empty({shape.batch, shape.pairs}, features.dtype());
    const T* x = In<T>(features);
    T* y = Out<T>(out);
    py::gil_scoped_release unlocked;
    interaction::InteractRows<T, Acc<T>>(x, shape, 0, shape.batch, y);
    return out;
  });
}

py::array InteractGrad(py::handle features_in, py::handle grad_in, bool self_interaction) {
  const py::array features = Checked("features", features_in, 0);
  const interaction::InteractionShape shape = InteractionShapeOf(ShapeOf(features), self_interaction);
  const py::array grad = CheckedShape("grad", grad_in, {shape.batch, shape.pairs}, features.dtype());
  return WithFloatType(features.dtype(), [&](auto type) {
    using T = decltype(type);
    py::array grad_features = Empty(ShapeOf(features), features.dtype());
    const T *x = In<T>(features), *g = In<T>(grad);
    T* dx = Out<T>(grad_features);
    py::gil_scoped_release unlocked;
    interaction::InteractGradRows<T, Acc<T>>(x, g, shape, 0, shape.batch, dx);
    return grad_features;
  });
}

}  // namespace

void BindInteraction(py::module_& m) {
  m.def("dot_interaction", &Interact, py::arg("features"), py::arg("self_interaction") = false,
        "The dot products of the pairs j < i (j <= i with self_interaction) of features [batch, features, dim], "
        "in the row-major order of the lower triangle.");
  m.def("dot_interaction_grad", &InteractGrad, py::arg("features"), py::arg("grad"),
        py::arg("self_interaction") = false, "dot_interaction's gradient for features given the output gradient.");
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit
