// The attention family's CUDA launchers over GPU arrays (outputs given by the caller).
#include <pybind11/stl.h>

#include <vector>

#include "kernels/attention/attention_gpu.h"
#include "kernels/python/bindings.h"
#include "kernels/python/cuda_arrays.h"

namespace tfkit {
namespace kernels {
namespace python {
namespace {

// The checked GPU inputs of one call (see attention.cc's Call).
struct GpuCall {
  GpuArray query, key, value, bias, mask;
  bool has_bias = false, has_mask = false;
  attention::AttentionShape shape;

  GpuCall(py::handle query_in, py::handle key_in, py::handle value_in, const py::object& bias_in,
          const py::object& mask_in) {
    query = Gpu("query", query_in, 0);
    key = Gpu("key", key_in, 0, query.dtype);
    value = Gpu("value", value_in, 0, query.dtype);
    has_bias = !bias_in.is_none();
    has_mask = !mask_in.is_none();
    if (has_bias) bias = Gpu("bias", bias_in, 0, query.dtype);
    if (has_mask) mask = Gpu("mask", mask_in, 0, "bool");
    shape = AttentionShapeOf(query.shape, key.shape, value.shape, has_bias ? &bias.shape : nullptr,
                             has_mask ? &mask.shape : nullptr);
  }

  template <typename T>
  attention::AttentionInputs<T> Inputs(const py::object& scale, bool is_causal, double dropout_rate,
                                       std::pair<int64_t, int64_t> seed) const {
    return AttentionInputsOf<T>(shape, Ptr<T>(query), Ptr<T>(key), Ptr<T>(value), has_bias ? Ptr<T>(bias) : nullptr,
                                has_mask ? Ptr<bool>(mask) : nullptr, scale, is_causal, dropout_rate, seed);
  }

  Shape LseShape() const { return {shape.batch, shape.heads, shape.target}; }
};

void Forward(py::handle query, py::handle key, py::handle value, py::handle out_in, py::handle lse_in,
             const py::object& bias, const py::object& mask, const py::object& scale, bool is_causal,
             double dropout_rate, std::pair<int64_t, int64_t> seed, uintptr_t stream) {
  const GpuCall call(query, key, value, bias, mask);
  const GpuArray out = Gpu("out", out_in, 0, call.query.dtype, call.query.shape);
  const GpuArray lse = Gpu("lse", lse_in, 0, AccDtype(call.query.dtype), call.LseShape());
  WithStorageType(call.query.dtype, [&](auto type) {
    using T = decltype(type);
    CheckLaunch(attention::LaunchAttentionForward(StreamOf(stream), call.Inputs<T>(scale, is_causal, dropout_rate, seed),
                                                  Ptr<T>(out), Ptr<Acc<T>>(lse)),
                "attention forward");
  });
}

void Backward(py::handle dout_in, py::handle query, py::handle key, py::handle value, py::handle output_in,
              py::handle lse_in, py::handle dquery_in, py::handle dkey_in, py::handle dvalue_in,
              const py::object& dbias_in, const py::object& bias, const py::object& mask, const py::object& scale,
              bool is_causal, double dropout_rate, std::pair<int64_t, int64_t> seed, uintptr_t stream) {
  const GpuCall call(query, key, value, bias, mask);
  const std::string& dtype = call.query.dtype;
  const GpuArray dout = Gpu("dout", dout_in, 0, dtype, call.query.shape);
  const GpuArray output = Gpu("output", output_in, 0, dtype, call.query.shape);
  const GpuArray lse = Gpu("lse", lse_in, 0, AccDtype(dtype), call.LseShape());
  const GpuArray dquery = Gpu("dquery", dquery_in, 0, dtype, call.query.shape);
  const GpuArray dkey = Gpu("dkey", dkey_in, 0, dtype, call.key.shape);
  const GpuArray dvalue = Gpu("dvalue", dvalue_in, 0, dtype, call.key.shape);
  const GpuArray dbias = call.has_bias ? Gpu("dbias", dbias_in, 0, dtype, call.bias.shape) : GpuArray();
  WithStorageType(dtype, [&](auto type) {
    using T = decltype(type);
    using U = Acc<T>;
    attention::AttentionGrads<T> g;
    g.dout = Ptr<T>(dout);
    g.out = Ptr<T>(output);
    g.lse = Ptr<U>(lse);
    g.dquery = Ptr<T>(dquery);
    g.dkey = Ptr<T>(dkey);
    g.dvalue = Ptr<T>(dvalue);
    g.dbias = call.has_bias ? Ptr<T>(dbias) : nullptr;
    const cudaStream_t s = StreamOf(stream);
    if (call.query.size() == 0 || call.key.size() == 0) {
      for (const GpuArray* a : {&dquery, &dkey, &dvalue, &dbias}) {
        if (a->size() > 0) CheckLaunch(cudaMemsetAsync(a->data, 0, a->size() * sizeof(T), s), "attention zeros");
      }
      return;
    }
    Workspace<U> workspace(attention::AttentionBackwardWorkspaceSize(call.shape, call.has_bias ? call.bias.size() : 0),
                           s);
    CheckLaunch(attention::LaunchAttentionBackward(s, call.Inputs<T>(scale, is_causal, dropout_rate, seed), g,
                                                   workspace.ptr),
                "attention backward");
  });
}

}  // namespace

void BindAttentionCuda(py::module_& cuda) {
  cuda.def("dot_product_attention", &Forward, py::arg("query"), py::arg("key"), py::arg("value"), py::arg("out"),
           py::arg("lse"), py::arg("bias") = py::none(), py::arg("mask") = py::none(), py::arg("scale") = py::none(),
           py::arg("is_causal") = false, py::arg("dropout_rate") = 0.0,
           py::arg("seed") = std::pair<int64_t, int64_t>(0, 0), py::arg("stream") = 0,
           "Dot-product attention into out [B, T, N, H] and lse [B, N, T] (float32, float64 for float64).");
  cuda.def("dot_product_attention_grad", &Backward, py::arg("dout"), py::arg("query"), py::arg("key"),
           py::arg("value"), py::arg("output"), py::arg("lse"), py::arg("dquery"), py::arg("dkey"), py::arg("dvalue"),
           py::arg("dbias") = py::none(), py::arg("bias") = py::none(), py::arg("mask") = py::none(),
           py::arg("scale") = py::none(), py::arg("is_causal") = false, py::arg("dropout_rate") = 0.0,
           py::arg("seed") = std::pair<int64_t, int64_t>(0, 0), py::arg("stream") = 0,
           "dot_product_attention's gradients into dquery, dkey, dvalue and (with a bias) dbias.");
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit
