// tfkit_kernels: the framework-free kernels of every family as a Python
// module, without TensorFlow (tools/build_kernels_module.py builds it): the
// CPU kernels over NumPy arrays and, in a build with CUDA, the launchers over
// GPU arrays in the submodule `cuda`.
#include "kernels/python/bindings.h"

PYBIND11_MODULE(tfkit_kernels, m) {
  namespace python = tfkit::kernels::python;
  m.doc() = "tfkit's framework-free kernels: CPU over NumPy arrays, CUDA (tfkit_kernels.cuda) over GPU arrays";
  python::BindNorm(m);
  python::BindActivation(m);
  python::BindRotary(m);
  python::BindResampling(m);
  python::BindEmbedding(m);
  python::BindAttention(m);
  python::BindDeformConv(m);
  python::BindInteraction(m);
#ifdef TFKIT_KERNELS_CUDA
  pybind11::module_ cuda = m.def_submodule("cuda", "The CUDA launchers over GPU arrays, on the given stream");
  python::BindNormCuda(cuda);
  python::BindActivationCuda(cuda);
  python::BindRotaryCuda(cuda);
  python::BindResamplingCuda(cuda);
  python::BindEmbeddingCuda(cuda);
  python::BindAttentionCuda(cuda);
  python::BindDeformConvCuda(cuda);
  python::BindInteractionCuda(cuda);
  m.attr("has_cuda") = true;
#else
  m.attr("has_cuda") = false;
#endif
}
