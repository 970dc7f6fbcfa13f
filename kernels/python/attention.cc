// The attention family's CPU kernels over NumPy arrays (run on the calling
// thread: the work items give the op library's results).
#include <pybind11/stl.h>

#include <optional>
#include <vector>

#include "kernels/attention/attention_cpu.h"
#include "kernels/python/arrays.h"
#include "kernels/python/bindings.h"

namespace tfkit {
namespace kernels {
namespace python {
namespace {

// The checked inputs of one call: query, key, value and the optional bias
// (query's dtype) and mask (bool), all rank 4.
struct Call {
  py::array query, key, value, bias, mask;
  bool has_bias = false, has_mask = false;
  attention::AttentionShape shape;

  Call(py::handle query_in, py::handle key_in, py::handle value_in, const py::object& bias_in,
       const py::object& mask_in) {
    query = Checked("query", query_in, 0);
    const py::dtype dtype = query.dtype();
    key = Checked("key", key_in, 0, &dtype);
    value = Checked("value", value_in, 0, &dtype);
    has_bias = !bias_in.is_none();
    has_mask = !mask_in.is_none();
    std::vector<int64_t> bias_dims, mask_dims;
    if (has_bias) {
      bias = Checked("bias", bias_in, 0, &dtype);
      bias_dims = ShapeOf(bias);
    }
    if (has_mask) {
      const py::dtype boolean = py::dtype::of<bool>();
      mask = Checked("mask", mask_in, 0, &boolean);
      mask_dims = ShapeOf(mask);
    }
    shape = AttentionShapeOf(ShapeOf(query), ShapeOf(key), ShapeOf(value), has_bias ? &bias_dims : nullptr,
                             has_mask ? &mask_dims : nullptr);
  }

  template <typename T>
  attention::AttentionInputs<T> Inputs(const py::object& scale, bool is_causal, double dropout_rate,
                                       std::pair<int64_t, int64_t> seed) const {
    return AttentionInputsOf<T>(shape, In<T>(query), In<T>(key), In<T>(value), has_bias ? In<T>(bias) : nullptr,
                                has_mask ? In<bool>(mask) : nullptr, scale, is_causal, dropout_rate, seed);
  }
};

py::tuple Forward(py::handle query, py::handle key, py::handle value, const py::object& bias, const py::object& mask,
                  const py::object& scale, bool is_causal, double dropout_rate, std::pair<int64_t, int64_t> seed) {
  const Call call(query, key, value, bias, mask);
  return WithFloatType(call.query.dtype(), [&](auto type) {
    using T = decltype(type);
    const auto in = call.Inputs<T>(scale, is_causal, dropout_rate, seed);
    py::array out = Empty(ShapeOf(call.query), call.query.dtype());
    py::array lse = Empty({in.shape.batch, in.shape.heads, in.shape.target}, call.query.dtype());
    T* out_data = Out<T>(out);
    T* lse_data = Out<T>(lse);
    {
      py::gil_scoped_release unlocked;
      attention::AttentionForward<T, T>(in, 0, attention::ForwardItems(in.shape), out_data, lse_data);
    }
    return py::make_tuple(out, lse);
  });
}

py::tuple Backward(py::handle dout_in, py::handle query, py::handle key, py::handle value, py::handle output_in,
                   py::handle lse_in, const py::object& bias, const py::object& mask, const py::object& scale,
                   bool is_causal, double dropout_rate, std::pair<int64_t, int64_t> seed) {
  const Call call(query, key, value, bias, mask);
  const py::dtype dtype = call.query.dtype();
  const py::array dout = CheckedShape("dout", dout_in, ShapeOf(call.query), dtype);
  const py::array output = CheckedShape("output", output_in, ShapeOf(call.query), dtype);
  const attention::AttentionShape& s = call.shape;
  const py::array lse = CheckedShape("lse", lse_in, {s.batch, s.heads, s.target}, dtype);
  return WithFloatType(dtype, [&](auto type) {
    using T = decltype(type);
    const auto in = call.Inputs<T>(scale, is_causal, dropout_rate, seed);
    py::array dquery = Empty(ShapeOf(call.query), dtype), dkey = Empty(ShapeOf(call.key), dtype);
    py::array dvalue = Empty(ShapeOf(call.key), dtype);
    py::array dbias = Empty(call.has_bias ? ShapeOf(call.bias) : Shape{0}, dtype);
    std::vector<T> workspace(attention::BackwardWorkspaceSize(s, call.has_bias));
    attention::AttentionGrads<T> g;
    g.dout = In<T>(dout);
    g.out = In<T>(output);
    g.lse = In<T>(lse);
    g.dquery = Out<T>(dquery);
    g.dkey = Out<T>(dkey);
    g.dvalue = Out<T>(dvalue);
    g.dbias = Out<T>(dbias);
    const std::pair<T*, int64_t> outputs[] = {
        {g.dquery, dquery.size()}, {g.dkey, dkey.size()}, {g.dvalue, dvalue.size()}, {g.dbias, dbias.size()}};
    {
      py::gil_scoped_release unlocked;
      if (call.query.size() == 0 || call.key.size() == 0) {
        for (const auto& [data, size] : outputs) std::fill_n(data, size, T(0));
      } else {
        attention::AttentionBackward<T, T>(in, g, workspace.data(), Serially());
      }
    }
    return py::make_tuple(dquery, dkey, dvalue, call.has_bias ? py::object(dbias) : py::object(py::none()));
  });
}

}  // namespace

void BindAttention(py::module_& m) {
  m.def("dot_product_attention", &Forward, py::arg("query"), py::arg("key"), py::arg("value"),
        py::arg("bias") = py::none(), py::arg("mask") = py::none(), py::arg("scale") = py::none(),
        py::arg("is_causal") = false, py::arg("dropout_rate") = 0.0,
        py::arg("seed") = std::pair<int64_t, int64_t>(0, 0),
        "Dot-product attention of query [B, T, N, H], key and value [B, S, K, H], bias and mask rank 4: "
        "(output, lse).");
  m.def("dot_product_attention_grad", &Backward, py::arg("dout"), py::arg("query"), py::arg("key"), py::arg("value"),
        py::arg("output"), py::arg("lse"), py::arg("bias") = py::none(), py::arg("mask") = py::none(),
        py::arg("scale") = py::none(), py::arg("is_causal") = false, py::arg("dropout_rate") = 0.0,
        py::arg("seed") = std::pair<int64_t, int64_t>(0, 0),
        "dot_product_attention's gradients from its output and lse: (dquery, dkey, dvalue, dbias or None).");
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit
