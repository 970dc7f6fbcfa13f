// The embedding family's CPU kernels over NumPy arrays.
#include <string>
#include <tuple>
#include <vector>

#include "kernels/embedding/embedding_cpu.h"
#include "kernels/python/arrays.h"
#include "kernels/python/bindings.h"

namespace tfkit {
namespace kernels {
namespace python {

using embedding::Combiner;

Combiner CombinerNamed(const std::string& name) {
  if (name == "sum") return Combiner::kSum;
  if (name == "mean") return Combiner::kMean;
  if (name == "sqrtn") return Combiner::kSqrtn;
  throw py::value_error("combiner must be sum, mean or sqrtn, got " + name);
}

namespace {

using embedding::BagShape;

// The checked arrays of one call: ids and row_splits int64, params [vocab,
// dim] float32/float64, weights None or like ids; bad ids or splits raise
// ValueError naming them.
struct Bags {
  py::array ids, splits, params, weights;
  BagShape shape;
};

Bags CheckedBags(py::handle ids_in, py::handle splits_in, py::handle params_in, py::handle weights_in,
                 const std::string& combiner) {
  Bags bags;
  const py::dtype int64 = py::dtype::of<int64_t>();
  bags.params = Checked("params", params_in, 2);
  bags.ids = Checked("ids", ids_in, 1, &int64);
  bags.splits = Checked("row_splits", splits_in, 1, &int64);
  if (bags.params.ndim() != 2 || bags.ids.ndim() != 1 || bags.splits.ndim() != 1 || bags.splits.size() < 1) {
    throw py::value_error("params must be [vocab, dim], ids [n] and row_splits [bags + 1]");
  }
  BagShape& shape = bags.shape;
  shape.ids = bags.ids.size();
  shape.bags = bags.splits.size() - 1;
  shape.vocab = bags.params.shape(0);
  shape.dim = bags.params.shape(1);
  shape.combiner = CombinerNamed(combiner);
  shape.weighted = !weights_in.is_none() && shape.ids > 0;
  if (!weights_in.is_none()) bags.weights = CheckedShape("weights", weights_in, {shape.ids}, bags.params.dtype());
  const int64_t bad_split = embedding::FirstBadSplit(In<int64_t>(bags.splits), shape.bags, shape.ids);
  if (bad_split >= 0) throw py::value_error("row_splits is not a partition of the ids at " + std::to_string(bad_split));
  const int64_t bad_id = embedding::FirstBadId(In<int64_t>(bags.ids), shape.ids, shape.vocab);
  if (bad_id >= 0) {
    throw py::value_error("ids must be in [0, " + std::to_string(shape.vocab) + "), got " +
                          std::to_string(In<int64_t>(bags.ids)[bad_id]) + " at " + std::to_string(bad_id));
  }
  return bags;
}

template <typename T>
const T* WeightsOf(const Bags& bags) {
  return bags.shape.weighted ? In<T>(bags.weights) : nullptr;
}

py::array Forward(py::handle ids, py::handle splits, py::handle params, py::handle weights,
                  const std::string& combiner) {
  const Bags bags = CheckedBags(ids, splits, params, weights, combiner);
  return WithFloatType(bags.params.dtype(), [&](auto type) {
    using T = decltype(type);
    py::array y = Empty({bags.shape.bags, bags.shape.dim}, bags.params.dtype());
    T* yp = Out<T>(y);
    py::gil_scoped_release unlocked;
    std::vector<embedding::BagSum<T>> sum(bags.shape.dim);
    embedding::EmbeddingBagRows(In<int64_t>(bags.ids), In<int64_t>(bags.splits), In<T>(bags.params),
                                WeightsOf<T>(bags), bags.shape, 0, bags.shape.bags, sum.data(), yp);
    return y;
  });
}

std::tuple<py::array, py::object> Backward(py::handle ids, py::handle splits, py::handle params, py::handle weights,
                                           py::handle dy_in, const std::string& combiner) {
  const Bags bags = CheckedBags(ids, splits, params, weights, combiner);
  const py::array dy = CheckedShape("dy", dy_in, {bags.shape.bags, bags.shape.dim}, bags.params.dtype());
  return WithFloatType(bags.params.dtype(), [&](auto type) {
    using T = decltype(type);
    py::array d_values = Empty({bags.shape.ids, bags.shape.dim}, bags.params.dtype());
    py::array d_weights = Empty({bags.shape.weighted ? bags.shape.ids : 0}, bags.params.dtype());
    T *vp = Out<T>(d_values), *wp = Out<T>(d_weights);
    {
      py::gil_scoped_release unlocked;
      std::vector<embedding::BagSum<T>> dots;
      embedding::EmbeddingBagGradRows(In<T>(dy), In<int64_t>(bags.ids), In<int64_t>(bags.splits),
                                      In<T>(bags.params), WeightsOf<T>(bags), bags.shape, 0, bags.shape.bags, &dots,
                                      vp, wp);
    }
    py::object weights_grad = weights.is_none() ? py::none() : py::object(d_weights);
    return std::make_tuple(d_values, weights_grad);
  });
}

}  // namespace

void BindEmbedding(py::module_& m) {
  m.def("embedding_bag", &Forward, py::arg("ids"), py::arg("row_splits"), py::arg("params"),
        py::arg("weights") = py::none(), py::arg("combiner") = "sum",
        "Bag b of ids[row_splits[b]:row_splits[b + 1]] combined into one row of params' width.");
  m.def("embedding_bag_grad", &Backward, py::arg("ids"), py::arg("row_splits"), py::arg("params"),
        py::arg("weights"), py::arg("dy"), py::arg("combiner") = "sum",
        "embedding_bag's gradients: (one params row per id [n, dim], the weights' gradient or None).");
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit
