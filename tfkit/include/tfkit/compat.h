// The one place tfkit's C++ reaches into TensorFlow internals that a release
// may change, each behind a compile-time feature test. A missing internal
// turns its feature off (the build still succeeds) and the library records
// which are on in strings `tfkit._compat` reads from the file:
// "TFKIT_COMPAT <name>=<0|1>;".
//
// - var_mu: `tensorflow::Var::mu()`, the variable's mutex, so a resource op
//   can read a variable's tensor in place under its shared lock (as
//   ResourceGather does). Without it the resource embedding bag refuses to
//   run and tfkit reads the variable's value instead.
#ifndef TFKIT_COMPAT_H_
#define TFKIT_COMPAT_H_

#include <optional>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "tensorflow/core/framework/resource_var.h"

namespace tfkit {
namespace compat {

template <typename V, typename = void>
struct HasMutex : std::false_type {};
template <typename V>
struct HasMutex<V, std::void_t<decltype(std::declval<V&>().mu())>> : std::true_type {};

inline constexpr bool kVarMu = HasMutex<::tensorflow::Var>::value;

// Takes `variable`'s shared lock into *lock, or says why it can't.
template <typename V = ::tensorflow::Var>
absl::Status LockShared(V* variable, std::optional<::tensorflow::tf_shared_lock>* lock) {
  if constexpr (HasMutex<V>::value) {
    lock->emplace(*variable->mu());
    return absl::OkStatus();
  } else {
    return absl::UnimplementedError(
        "this TensorFlow's Var has no mu(): tfkit's compat feature var_mu is off, so a variable can't be read in "
        "place; tfkit.ops reads its value instead");
  }
}

}  // namespace compat
}  // namespace tfkit

// Defines the string that tells which way a feature test went (once per
// library: in the one source file that uses the feature).
#define TFKIT_COMPAT_FEATURE(NAME, ON)                                                              \
  extern "C" __attribute__((visibility("default"), used)) const char* const tfkit_compat_##NAME = \
      (ON) ? "TFKIT_COMPAT " #NAME "=1;" : "TFKIT_COMPAT " #NAME "=0;"

#endif  // TFKIT_COMPAT_H_
