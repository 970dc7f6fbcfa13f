// The deformable convolution family's rules, written once for the op
// registrations and their shape functions, the OpKernels and the kernels
// module: the padding names, the attrs' ranges and the shape rule.
#ifndef TFKIT_KERNELS_DEFORM_CONV_DEFORM_CONV_RULES_H_
#define TFKIT_KERNELS_DEFORM_CONV_DEFORM_CONV_RULES_H_

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kernels/common/rules.h"
#include "kernels/common/types.h"

namespace tfkit {
namespace kernels {
namespace deform_conv {

enum class Padding : int { kValid = 0, kSame = 1 };

inline constexpr const char* kPaddingNames[] = {"valid", "same"};
static_assert(sizeof(kPaddingNames) / sizeof(kPaddingNames[0]) == static_cast<int>(Padding::kSame) + 1,
              "one name per Padding, in the enum's order");

inline std::string PaddingAttrSpec() { return AttrSpec("padding", kPaddingNames, "valid"); }

inline std::string PaddingNamed(const std::string& name, Padding* padding) {
  return EnumNamed("padding", kPaddingNames, name, padding);
}

// The ops' attrs: strides and dilations (rows, columns), groups.
struct DeformConvAttrs {
  std::vector<int64_t> strides{1, 1};
  std::vector<int64_t> dilations{1, 1};
  Padding padding = Padding::kValid;
  int64_t groups = 1;
  int64_t offset_groups = 1;
};

inline std::string AttrsError(const DeformConvAttrs& attrs) {
  for (const auto& [name, pair] : {std::make_pair("strides", &attrs.strides), std::make_pair("dilations", &attrs.dilations)}) {
    if (pair->size() != 2 || (*pair)[0] < 1 || (*pair)[1] < 1) {
      return std::string(name) + " must be two integers >= 1 (rows, columns), got " + DimsString(*pair);
    }
  }
  if (attrs.groups < 1) return "groups must be >= 1, got " + std::to_string(attrs.groups);
  if (attrs.offset_groups < 1) return "offset_groups must be >= 1, got " + std::to_string(attrs.offset_groups);
  return "";
}

struct DeformConvShape {
  int64_t batch = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 0;
  int64_t kernel_h = 0;
  int64_t kernel_w = 0;
  int64_t filters = 0;
  int64_t out_h = 0;
  int64_t out_w = 0;
  int64_t stride_h = 1;
  int64_t stride_w = 1;
  int64_t dilation_h = 1;
  int64_t dilation_w = 1;
  int64_t pad_top = 0;
  int64_t pad_left = 0;
  int64_t groups = 1;
  int64_t offset_groups = 1;

  TFKIT_HOST_DEVICE int64_t taps() const { return kernel_h * kernel_w; }
  TFKIT_HOST_DEVICE int64_t pixels() const { return out_h * out_w; }       // output pixels per batch item
  TFKIT_HOST_DEVICE int64_t rows() const { return batch * pixels(); }       // output pixels in all
  TFKIT_HOST_DEVICE int64_t group_channels() const { return channels / groups; }
  TFKIT_HOST_DEVICE int64_t group_filters() const { return filters / groups; }
  TFKIT_HOST_DEVICE int64_t offset_group_channels() const { return channels / offset_groups; }
  TFKIT_HOST_DEVICE int64_t group_depth() const { return taps() * group_channels(); }  // one group's column width
};

// One axis's output size and the padding before it, as tf.nn.conv2d pads:
// "valid" none, "same" ceil(in / stride) outputs with the padding split
// evenly, the odd one after. False where the window's extent passes int64.
inline bool AxisSize(int64_t in, int64_t kernel, int64_t stride, int64_t dilation, Padding padding, int64_t* out,
                     int64_t* before) {
  *before = 0;
  if (kernel < 1) {
    *out = kUnknownDim;
    return true;
  }
  if (kernel - 1 > (std::numeric_limits<int64_t>::max() - 1) / dilation) return false;
  const int64_t extent = (kernel - 1) * dilation + 1;
  if (!DimKnown(in)) {
    *out = kUnknownDim;
  } else if (padding == Padding::kValid) {
    *out = in >= extent ? (in - extent) / stride + 1 : 0;
  } else {
    *out = in / stride + (in % stride != 0);
    const int64_t needed = *out > 0 ? (*out - 1) * stride + extent : 0;
    *before = needed > in ? (needed - in) / 2 : 0;
  }
  return true;
}

inline std::string KernelError(const Dims& x, const Dims& kernel, const DeformConvAttrs& attrs) {
  if (kernel.size() != 4) {
    return "kernel must have rank 4 ([kernel_height, kernel_width, channels / groups, filters]), got shape " +
           DimsString(kernel);
  }
  for (int axis = 0; axis < 2; ++axis) {
    if (DimKnown(kernel[axis]) && kernel[axis] < 1) {
      return "kernel's spatial sizes must be >= 1, got shape " + DimsString(kernel);
    }
  }
  const int64_t channels = x[3], filters = kernel[3];
  if (DimKnown(channels) && channels % attrs.groups != 0) {
    return "groups (" + std::to_string(attrs.groups) + ") must divide x's channels (" + std::to_string(channels) + ")";
  }
  if (DimKnown(filters) && filters % attrs.groups != 0) {
    return "groups (" + std::to_string(attrs.groups) + ") must divide kernel's filters (" + std::to_string(filters) +
           "), got kernel " + DimsString(kernel);
  }
  if (DimKnown(channels) && !DimsAgree(kernel[2], channels / attrs.groups)) {
    return "kernel must have shape [kernel_height, kernel_width, channels / groups, filters] with channels / groups = " +
           std::to_string(channels / attrs.groups) + " (x " + DimsString(x) + ", groups " +
           std::to_string(attrs.groups) + "), got shape " + DimsString(kernel);
  }
  if (DimKnown(channels) && channels % attrs.offset_groups != 0) {
    return "offset_groups (" + std::to_string(attrs.offset_groups) + ") must divide x's channels (" +
           std::to_string(channels) + ")";
  }
  return "";
}

// The output sizes into *shape (x, kernel and attrs already checked).
inline std::string OutputSizeError(const Dims& x, const Dims& kernel, const DeformConvAttrs& attrs,
                                   DeformConvShape* shape) {
  const bool fits = AxisSize(x[1], kernel[0], attrs.strides[0], attrs.dilations[0], attrs.padding, &shape->out_h,
                             &shape->pad_top) &&
                    AxisSize(x[2], kernel[1], attrs.strides[1], attrs.dilations[1], attrs.padding, &shape->out_w,
                             &shape->pad_left);
  if (fits) return "";
  return "dilations (" + DimsString(attrs.dilations) + ") times kernel's spatial sizes (kernel " +
         DimsString(kernel) + ") must fit in int64";
}

// The offsets' and the mask's expected shapes.
inline Dims SampleDims(const DeformConvShape& s, int64_t per_tap) {
  const bool taps_known = DimKnown(s.kernel_h) && DimKnown(s.kernel_w);
  return {s.batch, s.out_h, s.out_w, taps_known ? s.offset_groups * s.taps() * per_tap : kUnknownDim};
}

// x [batch, height, width, channels], offsets [batch, out_h, out_w,
// offset_groups * kh * kw * 2], mask [batch, out_h, out_w, offset_groups *
// kh * kw] and kernel [kh, kw, channels / groups, filters] give the output
// [batch, out_h, out_w, filters]. Fills *shape and *output; unknown sizes
// (shape functions) agree with any.
inline std::string DeformConvShapeError(const Dims& x, const Dims& offsets, const Dims& mask, const Dims& kernel,
                                        const DeformConvAttrs& attrs, DeformConvShape* shape, Dims* output) {
  std::string error = AttrsError(attrs);
  if (!error.empty()) return error;
  if (x.size() != 4) return "x must have rank 4 ([batch, height, width, channels]), got shape " + DimsString(x);
  error = KernelError(x, kernel, attrs);
  if (!error.empty()) return error;
  *shape = DeformConvShape{};
  shape->batch = x[0];
  shape->height = x[1];
  shape->width = x[2];
  shape->channels = x[3];
  shape->kernel_h = kernel[0];
  shape->kernel_w = kernel[1];
  shape->filters = kernel[3];
  shape->stride_h = attrs.strides[0];
  shape->stride_w = attrs.strides[1];
  shape->dilation_h = attrs.dilations[0];
  shape->dilation_w = attrs.dilations[1];
  shape->groups = attrs.groups;
  shape->offset_groups = attrs.offset_groups;
  error = OutputSizeError(x, kernel, attrs, shape);
  int64_t count = 0;
  if (error.empty() && DimKnown(shape->kernel_h) && DimKnown(shape->kernel_w)) {
    error = CountError("the taps (offset_groups * kernel_height * kernel_width * 2)",
                       {attrs.offset_groups, shape->kernel_h, shape->kernel_w, 2}, &count);
    if (error.empty()) {
      error = CountError("the columns of an output pixel (kernel_height * kernel_width * channels)",
                         {shape->kernel_h, shape->kernel_w, shape->channels}, &count);
    }
  }
  if (error.empty()) {
    if (!DimKnown(shape->batch)) shape->batch = offsets.empty() ? kUnknownDim : offsets[0];
    error = ShapeError("offsets", offsets, SampleDims(*shape, 2),
                       "[batch, out_height, out_width, offset_groups * kernel_height * kernel_width * 2]");
  }
  if (error.empty()) {
    error = ShapeError("mask", mask, SampleDims(*shape, 1),
                       "[batch, out_height, out_width, offset_groups * kernel_height * kernel_width]");
  }
  if (error.empty()) error = CountError("x", x, &count);
  if (error.empty()) error = CountError("offsets", offsets, &count);
  if (error.empty()) error = CountError("kernel", kernel, &count);
  if (error.empty()) {
    *output = {shape->batch, shape->out_h, shape->out_w, shape->filters};
    error = CountError("the output ([batch, out_height, out_width, filters])", *output, &count);
  }
  // Sizes of tensors with no elements may multiply past int64: no batch
  // item is no output pixel, an x with no elements samples as 0 x 0 pixels.
  if (shape->batch == 0) shape->out_h = shape->out_w = 0;
  int64_t x_elements = 0;
  if (error.empty() && DimProduct(x, &x_elements) && x_elements == 0) shape->height = shape->width = 0;
  return error;
}

}  // namespace deform_conv
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_DEFORM_CONV_DEFORM_CONV_RULES_H_
