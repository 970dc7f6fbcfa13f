// tfkit_kernels: the framework-free kernels of every family as a Python
// module, without TensorFlow (tools/build_kernels_module.py builds it).
#include "kernels/python/bindings.h"

PYBIND11_MODULE(tfkit_kernels, m) {
  m.doc() = "tfkit's framework-free CPU kernels over NumPy arrays";
  tfkit::kernels::python::BindNorm(m);
  tfkit::kernels::python::BindActivation(m);
  tfkit::kernels::python::BindRotary(m);
}
