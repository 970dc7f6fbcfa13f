// The kernels' Python module: one Bind function per family (a new family
// adds its file and one line in module.cc).
#ifndef TFKIT_KERNELS_PYTHON_BINDINGS_H_
#define TFKIT_KERNELS_PYTHON_BINDINGS_H_

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/activation/activation_math.h"
#include "kernels/embedding/embedding_cpu.h"
#include "kernels/resampling/resampling_cpu.h"

namespace tfkit {
namespace kernels {
namespace python {

void BindNorm(pybind11::module_& m);
void BindActivation(pybind11::module_& m);
void BindRotary(pybind11::module_& m);
void BindResampling(pybind11::module_& m);
void BindEmbedding(pybind11::module_& m);

// The CUDA launchers, in the submodule `cuda` (built where nvcc is found).
void BindNormCuda(pybind11::module_& cuda);
void BindActivationCuda(pybind11::module_& cuda);
void BindRotaryCuda(pybind11::module_& cuda);
void BindResamplingCuda(pybind11::module_& cuda);
void BindEmbeddingCuda(pybind11::module_& cuda);

// The activation named `name`; ValueError listing the names otherwise.
activation::Activation ActivationNamed(const std::string& name);

// The resampler's shape from data's and warp's, with the boundary named
// "zeros" or "clamp"; ValueError naming what is wrong otherwise.
resampling::ResamplerShape ResamplerShapeOf(const std::vector<int64_t>& data, const std::vector<int64_t>& warp,
                                            const std::string& boundary);
// warp's shape with its last dimension replaced by channels.
std::vector<int64_t> SamplesShape(const std::vector<int64_t>& warp, int64_t channels);

// The combiner named `name`; ValueError listing the names otherwise.
embedding::Combiner CombinerNamed(const std::string& name);

// A parallel_for (kernels/common/accumulate.h) that runs everything on the
// calling thread: the fixed row blocks give the op library's results.
inline auto Serially() {
  return [](int64_t n, int64_t, auto&& fn) { fn(0, n); };
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_PYTHON_BINDINGS_H_
