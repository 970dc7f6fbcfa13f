// Checked views of NumPy arrays for the kernels' Python module: every array
// a kernel gets has the expected dtype, shape and C-contiguous layout, or
// the call raises a Python error naming the argument.
#ifndef TFKIT_KERNELS_PYTHON_ARRAYS_H_
#define TFKIT_KERNELS_PYTHON_ARRAYS_H_

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/common/rules.h"

namespace tfkit {
namespace kernels {
namespace python {

namespace py = pybind11;

// Shapes print as in every tfkit message: DimsString (kernels/common/rules.h).
using Shape = Dims;

inline Shape ShapeOf(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }

// `value` as a NumPy array of float32 or float64 (`dtype` when given), C-contiguous,
// of rank >= min_rank; TypeError or ValueError naming `name` otherwise.
inline py::array Checked(const char* name, const py::handle& value, int min_rank,
                         const py::dtype* dtype = nullptr) {
  if (!py::isinstance<py::array>(value)) {
    throw py::type_error(std::string(name) + " must be a NumPy array, got " +
                         std::string(py::str(py::type::of(value))));
  }
  py::array a = py::reinterpret_borrow<py::array>(value);
  const bool floating = a.dtype().is(py::dtype::of<float>()) || a.dtype().is(py::dtype::of<double>());
  if (dtype != nullptr ? !a.dtype().is(*dtype) : !floating) {
    throw py::type_error(std::string(name) + " must have dtype " +
                         (dtype != nullptr ? std::string(py::str(*dtype)) : std::string("float32 or float64")) +
                         ", got " + std::string(py::str(a.dtype())));
  }
  if (!(a.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + " must be C-contiguous (use numpy.ascontiguousarray)");
  }
  if (a.ndim() < min_rank) {
    throw py::value_error(std::string(name) + " must have rank >= " + std::to_string(min_rank) + ", got shape " +
                          DimsString(ShapeOf(a)));
  }
  return a;
}

// Checked, and of exactly `shape`.
inline py::array CheckedShape(const char* name, const py::handle& value, const Shape& shape, const py::dtype& dtype) {
  py::array a = Checked(name, value, 0, &dtype);
  if (ShapeOf(a) != shape) {
    throw py::value_error(std::string(name) + " must have shape " + DimsString(shape) + ", got shape " +
                          DimsString(ShapeOf(a)));
  }
  return a;
}

inline int64_t LastDim(const py::array& a) { return a.ndim() == 0 ? 1 : a.shape(a.ndim() - 1); }

// The product of all but the last dimension.
inline int64_t Rows(const py::array& a) {
  int64_t rows = 1;
  for (py::ssize_t i = 0; i + 1 < a.ndim(); ++i) rows *= a.shape(i);
  return rows;
}

inline py::array Empty(const Shape& shape, const py::dtype& dtype) { return py::array(dtype, shape); }

template <typename T>
const T* In(const py::array& a) {
  return static_cast<const T*>(a.data());
}

template <typename T>
T* Out(py::array& a) {
  return static_cast<T*>(a.mutable_data());
}

// Calls f(T()) with T the C++ type of `dtype` (float or double).
template <typename F>
auto WithFloatType(const py::dtype& dtype, F&& f) {
  if (dtype.is(py::dtype::of<float>())) return f(float());
  return f(double());
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_PYTHON_ARRAYS_H_
