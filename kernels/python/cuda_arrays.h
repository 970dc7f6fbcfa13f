// Checked views of GPU arrays for the kernels' Python module: any object
// with __cuda_array_interface__ (CuPy, Numba, PyTorch) or a PyTorch CUDA
// tensor (also bfloat16, which the interface can't describe). Every array a
// launcher gets has the expected dtype and shape, is C-contiguous and lies
// in GPU memory, or the call raises a Python error naming the argument.
#ifndef TFKIT_KERNELS_PYTHON_CUDA_ARRAYS_H_
#define TFKIT_KERNELS_PYTHON_CUDA_ARRAYS_H_

#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <string>

#include "kernels/common/types.h"
#include "kernels/python/arrays.h"

namespace tfkit {
namespace kernels {
namespace python {

struct GpuArray {
  void* data = nullptr;
  Shape shape;
  std::string dtype;  // float16, bfloat16, float32, float64, int32 / int64 (ids) or bool (masks)
  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

inline bool IsTorchTensor(const py::handle& value) {
  return py::hasattr(value, "data_ptr") && py::hasattr(value, "is_cuda") && py::hasattr(value, "is_contiguous");
}

inline bool IsFloatDtype(const std::string& dtype) {
  return dtype == "float16" || dtype == "bfloat16" || dtype == "float32" || dtype == "float64";
}

inline int64_t ElementSize(const std::string& dtype) {
  if (dtype == "bool") return 1;
  return dtype == "float64" || dtype == "int64" ? 8 : dtype == "float32" || dtype == "int32" ? 4 : 2;
}

inline std::string DtypeOfTypestr(const std::string& name, const std::string& typestr) {
  if (typestr == "<f2") return "float16";
  if (typestr == "<f4") return "float32";
  if (typestr == "<f8") return "float64";
  if (typestr == "<i4") return "int32";
  if (typestr == "<i8") return "int64";
  if (typestr == "|b1") return "bool";
  throw py::type_error(name + " must have a float16, bfloat16, float32, float64, int32, int64 or bool dtype, " +
                       "got typestr " + typestr);
}

inline GpuArray FromTorch(const std::string& name, const py::handle& t) {
  if (!t.attr("is_cuda").cast<bool>()) throw py::value_error(name + " must be a CUDA tensor, got a CPU one");
  if (!t.attr("is_contiguous")().cast<bool>()) throw py::value_error(name + " must be contiguous (.contiguous())");
  GpuArray a;
  std::string dtype = py::str(t.attr("dtype"));
  if (dtype.rfind("torch.", 0) == 0) dtype = dtype.substr(6);
  if (!IsFloatDtype(dtype) && dtype != "int32" && dtype != "int64" && dtype != "bool") {
    throw py::type_error(name + " must have a float16, bfloat16, float32, float64, int32, int64 or bool dtype, got " +
                         dtype);
  }
  a.dtype = dtype;
  for (const auto& d : t.attr("shape")) a.shape.push_back(d.cast<int64_t>());
  a.data = reinterpret_cast<void*>(t.attr("data_ptr")().cast<uintptr_t>());
  return a;
}

inline GpuArray FromInterface(const std::string& name, const py::handle& value) {
  const py::dict cai = value.attr("__cuda_array_interface__");
  GpuArray a;
  a.dtype = DtypeOfTypestr(name, cai["typestr"].cast<std::string>());
  for (const auto& d : cai["shape"]) a.shape.push_back(d.cast<int64_t>());
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    int64_t expected = ElementSize(a.dtype);
    const py::tuple strides = cai["strides"];
    for (int64_t i = static_cast<int64_t>(a.shape.size()) - 1; i >= 0; --i) {
      if (a.shape[i] > 1 && strides[i].cast<int64_t>() != expected) {
        throw py::value_error(name + " must be C-contiguous");
      }
      expected *= a.shape[i];
    }
  }
  a.data = reinterpret_cast<void*>(cai["data"].cast<py::tuple>()[0].cast<uintptr_t>());
  return a;
}

// `value` as a GPU array of rank >= min_rank; `dtype` ("" for any float) and
// `shape` (empty for any) checked when given.
inline GpuArray Gpu(const std::string& name, const py::handle& value, int min_rank, const std::string& dtype = "",
                    const Shape& shape = {}) {
  GpuArray a;
  if (IsTorchTensor(value)) {
    a = FromTorch(name, value);
  } else if (py::hasattr(value, "__cuda_array_interface__")) {
    a = FromInterface(name, value);
  } else {
    throw py::type_error(name + " must be a GPU array (__cuda_array_interface__, e.g. CuPy, or a PyTorch CUDA tensor)");
  }
  if (dtype.empty() && !IsFloatDtype(a.dtype)) {
    throw py::type_error(name + " must have a float16, bfloat16, float32 or float64 dtype, got " + a.dtype);
  }
  if (!dtype.empty() && a.dtype != dtype) throw py::type_error(name + " must have dtype " + dtype + ", got " + a.dtype);
  if (static_cast<int>(a.shape.size()) < min_rank) {
    throw py::value_error(name + " must have rank >= " + std::to_string(min_rank) + ", got shape " +
                          DimsString(a.shape));
  }
  if (!shape.empty() && a.shape != shape) {
    throw py::value_error(name + " must have shape " + DimsString(shape) + ", got shape " + DimsString(a.shape));
  }
  if (a.size() > 0) {
    cudaPointerAttributes attributes;
    if (cudaPointerGetAttributes(&attributes, a.data) != cudaSuccess ||
        (attributes.type != cudaMemoryTypeDevice && attributes.type != cudaMemoryTypeManaged)) {
      cudaGetLastError();
      throw py::value_error(name + " does not point to GPU memory");
    }
  }
  return a;
}

// The product of all but the last dimension, the last one, and the shape
// without it.
inline int64_t Rows(const GpuArray& a) {
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < a.shape.size(); ++i) rows *= a.shape[i];
  return rows;
}
inline int64_t LastDim(const GpuArray& a) { return a.shape.empty() ? 1 : a.shape.back(); }
inline Shape StatsShape(const GpuArray& a) { return Shape(a.shape.begin(), a.shape.end() - 1); }

// The accumulation dtype of `dtype`: float32, or float64 for float64.
inline std::string AccDtype(const std::string& dtype) { return dtype == "float64" ? "float64" : "float32"; }

// Calls f(T()) with T the launchers' storage type of `dtype`.
template <typename F>
void WithStorageType(const std::string& dtype, F&& f) {
  if (dtype == "float32") return f(float());
  if (dtype == "float64") return f(double());
  if (dtype == "float16") return f(Half());
  return f(BFloat16());
}

// Raises RuntimeError naming `what` when a launch failed.
inline void CheckLaunch(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// A temporary device buffer of n elements of W on `stream`.
template <typename W>
struct Workspace {
  W* ptr = nullptr;
  cudaStream_t stream;
  Workspace(int64_t n, cudaStream_t s) : stream(s) {
    CheckLaunch(cudaMallocAsync(reinterpret_cast<void**>(&ptr), std::max<int64_t>(n, 1) * sizeof(W), s),
                "workspace allocation");
  }
  ~Workspace() { cudaFreeAsync(ptr, stream); }
};

inline cudaStream_t StreamOf(uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

template <typename T>
T* Ptr(const GpuArray& a) {
  return static_cast<T*>(a.data);
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_PYTHON_CUDA_ARRAYS_H_
