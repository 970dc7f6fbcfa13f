// Prints each registered Tfkit> op and how many kernels it has: with
// tfkit_ops_static linked in (alwayslink), every family's ops are there.
#include <iostream>
#include <string>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"

int main() {
  std::vector<tensorflow::OpDef> ops;
  tensorflow::OpRegistry::Global()->GetRegisteredOps(&ops);
  int found = 0;
  for (const tensorflow::OpDef& op : ops) {
    if (op.name().rfind("Tfkit>", 0) != 0) continue;
    ++found;
    const tensorflow::KernelList kernels = tensorflow::GetRegisteredKernelsForOp(op.name());
    std::cout << op.name() << " kernels=" << kernels.kernel_size() << "\n";
  }
  std::cout << "tfkit ops registered: " << found << "\n";
  return found > 0 ? 0 : 1;
}
