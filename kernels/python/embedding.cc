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
  const Shape weights = weights_in.is_none() ? Shape{0} : ShapeOf(Checked("weights", weights_in, 1));
  BagShape& shape = bags.shape;
  RaiseIfBroken(
      embedding::BagShapeError(ShapeOf(bags.ids), ShapeOf(bags.splits), ShapeOf(bags.params), weights, &shape));
  shape.combiner = CombinerNamed(combiner);
  shape.weighted = !weights_in.is_none() && shape.ids > 0;
  if (!weights_in.is_none()) bags.weights = CheckedShape("weights", weights_in, {shape.ids}, bags.params.dtype());
  const int64_t bad_split = embedding::FirstBadSplit(In<int64_t>(bags.splits), shape.bags, shape.ids);
  RaiseIfBroken(bad_split < 0 ? "" : embedding::BadSplitError(bad_split, shape.ids));
  const int64_t bad_id = embedding::FirstBadId(In<int64_t>(bags.ids), shape.ids, shape.vocab);
  RaiseIfBroken(bad_id < 0 ? "" : embedding::BadIdError(bad_id, In<int64_t>(bags.ids)[bad_id], shape.vocab));
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
  m.attr("COMBINERS") = NameTuple(embedding::kCombinerNames);
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
