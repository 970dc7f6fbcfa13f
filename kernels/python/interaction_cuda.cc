// The interaction family's CUDA launchers over GPU arrays (outputs given by the caller).
#include "kernels/interaction/interaction_gpu.h"
#include "kernels/python/bindings.h"
#include "kernels/python/cuda_arrays.h"

namespace tfkit {
namespace kernels {
namespace python {
namespace {

void Interact(py::handle features_in, py::handle out_in, bool self_interaction, uintptr_t stream) {
  const GpuArray features = Gpu("features", features_in, 0);
  const interaction::InteractionShape shape = InteractionShapeOf(features.shape, self_interaction);
  const GpuArray out = Gpu("out", out_in, 2, features.dtype, {shape.batch, shape.pairs});
  WithStorageType(features.dtype, [&](auto type) {
    using T = decltype(type);
    CheckLaunch(interaction::LaunchInteract(StreamOf(stream), Ptr<T>(features), shape, Ptr<T>(out)),
                "dot_interaction");
  });
}

void InteractGrad(py::handle features_in, py::handle grad_in, py::handle grad_features_in, bool self_interaction,
                  uintptr_t stream) {
  const GpuArray features = Gpu("features", features_in, 0);
  const interaction::InteractionShape shape = InteractionShapeOf(features.shape, self_interaction);
  const GpuArray grad = Gpu("grad", grad_in, 2, features.dtype, {shape.batch, shape.pairs});
  const GpuArray grad_features = Gpu("grad_features", grad_features_in, 3, features.dtype, features.shape);
  WithStorageType(features.dtype, [&](auto type) {
    using T = decltype(type);
    CheckLaunch(interaction::LaunchInteractGrad(StreamOf(stream), Ptr<T>(features), Ptr<T>(grad), shape,
                                                Ptr<T>(grad_features)),
                "dot_interaction_grad");
  });
}

}  // namespace

void BindInteractionCuda(py::module_& cuda) {
  cuda.def("dot_interaction", &Interact, py::arg("features"), py::arg("out"), py::arg("self_interaction") = false,
           py::arg("stream") = 0, "The pairs' dot products of features into out [batch, pairs].");
  cuda.def("dot_interaction_grad", &InteractGrad, py::arg("features"), py::arg("grad"), py::arg("grad_features"),
           py::arg("self_interaction") = false, py::arg("stream") = 0,
           "dot_interaction's gradient for features into grad_features.");
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit
