// The embedding family's CUDA launchers over GPU arrays (outputs given by the
// caller). Bad ids or row splits raise ValueError after the check kernel's
// result is copied back (the call waits for the stream).
#include <cstdint>
#include <string>

#include "kernels/embedding/embedding_gpu.h"
#include "kernels/python/bindings.h"
#include "kernels/python/cuda_arrays.h"

namespace tfkit {
namespace kernels {
namespace python {
namespace {

using embedding::BagShape;
using embedding::Combiner;

struct Bags {
  GpuArray ids, splits, params, weights;
  BagShape shape;
};

// ids int64 [n], row_splits int64 [bags + 1], params [vocab, dim], weights
// None or [n]; runs the check kernel and raises on a bad id or split.
Bags CheckedBags(py::handle ids_in, py::handle splits_in, py::handle params_in, py::handle weights_in,
                 const std::string& combiner, cudaStream_t stream) {
  Bags bags;
  bags.params = Gpu("params", params_in, 2);
  bags.ids = Gpu("ids", ids_in, 1, "int64");
  bags.splits = Gpu("row_splits", splits_in, 1, "int64");
  const Shape weights = weights_in.is_none() ? Shape{0} : Gpu("weights", weights_in, 1).shape;
  BagShape& shape = bags.shape;
  RaiseIfBroken(embedding::BagShapeError(bags.ids.shape, bags.splits.shape, bags.params.shape, weights, &shape));
  shape.combiner = CombinerNamed(combiner);
  shape.weighted = !weights_in.is_none() && shape.ids > 0;
  if (!weights_in.is_none()) bags.weights = Gpu("weights", weights_in, 1, bags.params.dtype, {shape.ids});
  Workspace<int64_t> status(2, stream);
  int64_t found[2];
  CheckLaunch(embedding::LaunchCheckBags(stream, Ptr<int64_t>(bags.ids), Ptr<int64_t>(bags.splits), shape,
                                         status.ptr),
              "embedding_bag check");
  CheckLaunch(cudaMemcpyAsync(found, status.ptr, sizeof(found), cudaMemcpyDeviceToHost, stream), "status copy");
  CheckLaunch(cudaStreamSynchronize(stream), "embedding_bag check");
  RaiseIfBroken(found[1] == embedding::kNoneBad ? "" : embedding::BadSplitError(found[1], shape.ids));
  if (found[0] != embedding::kNoneBad) {
    int64_t value = 0;
    CheckLaunch(cudaMemcpy(&value, Ptr<int64_t>(bags.ids) + found[0], sizeof(value), cudaMemcpyDeviceToHost),
                "bad id copy");
    RaiseIfBroken(embedding::BadIdError(found[0], value, shape.vocab));
  }
  return bags;
}

void Forward(py::handle ids, py::handle splits, py::handle params, py::handle weights, py::handle y_in,
             const std::string& combiner, uintptr_t stream) {
  const Bags bags = CheckedBags(ids, splits, params, weights, combiner, StreamOf(stream));
  const GpuArray y = Gpu("y", y_in, 2, bags.params.dtype, {bags.shape.bags, bags.shape.dim});
  WithStorageType(bags.params.dtype, [&](auto type) {
    using T = decltype(type);
    CheckLaunch(embedding::LaunchEmbeddingBag(StreamOf(stream), Ptr<int64_t>(bags.ids), Ptr<int64_t>(bags.splits),
                                              Ptr<T>(bags.params), Ptr<T>(bags.weights), bags.shape, Ptr<T>(y)),
                "embedding_bag");
  });
}

void Backward(py::handle ids, py::handle splits, py::handle params, py::handle weights, py::handle dy_in,
              py::handle d_values_in, py::handle d_weights_in, const std::string& combiner, uintptr_t stream) {
  const Bags bags = CheckedBags(ids, splits, params, weights, combiner, StreamOf(stream));
  const std::string& dtype = bags.params.dtype;
  const GpuArray dy = Gpu("dy", dy_in, 2, dtype, {bags.shape.bags, bags.shape.dim});
  const GpuArray d_values = Gpu("d_values", d_values_in, 2, dtype, {bags.shape.ids, bags.shape.dim});
  GpuArray d_weights;
  if (bags.shape.weighted) d_weights = Gpu("d_weights", d_weights_in, 1, dtype, {bags.shape.ids});
  WithStorageType(dtype, [&](auto type) {
    using T = decltype(type);
    using W = embedding::BagSum<T>;
    Workspace<W> dots(bags.shape.weighted ? bags.shape.ids : 0, StreamOf(stream));
    CheckLaunch(embedding::LaunchEmbeddingBagGrad(StreamOf(stream), Ptr<T>(dy), Ptr<int64_t>(bags.ids),
                                                  Ptr<int64_t>(bags.splits), Ptr<T>(bags.params),
                                                  Ptr<T>(bags.weights), bags.shape, dots.ptr, Ptr<T>(d_values),
                                                  Ptr<T>(d_weights)),
                "embedding_bag_grad");
  });
}

}  // namespace

void BindEmbeddingCuda(py::module_& cuda) {
  cuda.def("embedding_bag", &Forward, py::arg("ids"), py::arg("row_splits"), py::arg("params"), py::arg("weights"),
           py::arg("y"), py::arg("combiner") = "sum", py::arg("stream") = 0,
           "The bags of ids combined into y [bags, dim]; ValueError on a bad id or split.");
  cuda.def("embedding_bag_grad", &Backward, py::arg("ids"), py::arg("row_splits"), py::arg("params"),
           py::arg("weights"), py::arg("dy"), py::arg("d_values"), py::arg("d_weights"), py::arg("combiner") = "sum",
           py::arg("stream") = 0, "embedding_bag's gradients into d_values [n, dim] and d_weights [n] (if weighted).");
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit
