"""tf_custom_op_library: the one macro every tfkit op family builds with."""

load("@local_config_cuda//:defs.bzl", "CUDA_ENABLED", "CUDA_VERSION", "NVCC")
load("@local_config_tf//:defs.bzl", "TF_COPTS", "TF_CXX_STANDARD", "TF_DEFINES", "TF_VERSION")

CUDA_ARCHS = ["sm_80", "sm_90"]

_GPU_DEFINES = ["GOOGLE_CUDA=1", "EIGEN_USE_GPU"]

def _nvcc_flags():
    flags = [
        "-DGOOGLE_CUDA=1",
        "-x cu",
        "--expt-relaxed-constexpr",
        "-Xcompiler -fPIC",
        "-O3",
        "-std=" + TF_CXX_STANDARD,
    ]
    flags += ["-D" + d for d in TF_DEFINES]
    for arch in CUDA_ARCHS:
        flags.append("-gencode arch=compute_%s,code=%s" % (arch[3:], arch))
    last = CUDA_ARCHS[-1][3:]
    flags.append("-gencode arch=compute_%s,code=compute_%s" % (last, last))
    return " ".join(flags)

def _nvcc_objects_impl(ctx):
    """nvcc -> one position-independent object per .cu.cc."""
    objects = []
    for src in ctx.files.srcs:
        obj = ctx.actions.declare_file("_%s_objs/%s.pic.o" % (ctx.label.name, src.short_path.replace(".cu.cc", "")))
        ctx.actions.run_shell(
            inputs = [src] + ctx.files.hdrs,
            outputs = [obj],
            command = "%s %s -I. -c %s -o %s" % (NVCC, _nvcc_flags(), src.path, obj.path),
            mnemonic = "Nvcc",
            progress_message = "nvcc %s" % src.short_path,
            use_default_shell_env = True,
        )
        objects.append(obj)
    return [DefaultInfo(files = depset(objects))]

_nvcc_objects = rule(
    implementation = _nvcc_objects_impl,
    attrs = {
        "srcs": attr.label_list(allow_files = [".cu.cc"]),
        "hdrs": attr.label_list(allow_files = True),
    },
)

def _build_stamp(name):
    """A source whose string says which TensorFlow and CUDA the library is for."""
    stamp = "TFKIT_BUILD_STAMP tf_version=%s;cuda=%d;cuda_version=%s;cuda_archs=%s;" % (
        TF_VERSION,
        1 if CUDA_ENABLED else 0,
        CUDA_VERSION or "none",
        ",".join(CUDA_ARCHS) if CUDA_ENABLED else "none",
    )
    src = "_%s_stamp.cc" % name
    line = 'extern "C" __attribute__((visibility("default"), used)) ' + \
           'const char tfkit_build_stamp[] = "%s";' % stamp
    native.genrule(
        name = name + "_stamp",
        outs = [src],
        cmd = "echo '%s' > $@" % line,
    )
    return src

def tf_custom_op_library(name, srcs, gpu_srcs = [], hdrs = [], deps = [], static_name = None):
    """Builds a loadable TensorFlow op library `name` (a .so).

    Args:
      name: output file name, e.g. "_tfkit_ops.so".
      srcs: C++ sources: op registrations, OpKernels, CPU kernels.
      gpu_srcs: *.cu.cc sources (or filegroups of them) compiled with nvcc when
        CUDA is configured.
      hdrs: headers the sources include (framework-free kernels among them).
      deps: further cc deps.
      static_name: also a cc_library of this name with the same objects,
        alwayslink, for binaries that link the ops in (TensorFlow Serving).
    """
    gpu = CUDA_ENABLED and len(gpu_srcs) > 0
    cuda_deps = ["@local_config_cuda//:cuda_headers"] if gpu else []
    native.cc_library(
        name = name + "_kernels",
        srcs = srcs + [_build_stamp(name)],
        hdrs = hdrs,
        copts = TF_COPTS + ["-fPIC", "-O3", "-Wno-sign-compare", "-Wno-unused-function"],
        local_defines = _GPU_DEFINES if gpu else [],
        deps = deps + cuda_deps + ["@local_config_tf//:tf_headers"],
        alwayslink = 1,
    )
    gpu_deps = []
    if gpu:
        _nvcc_objects(name = name + "_nvcc", srcs = gpu_srcs, hdrs = hdrs)
        native.cc_library(
            name = name + "_gpu",
            srcs = [name + "_nvcc"],
            deps = ["@local_config_cuda//:cudart_static"],
            alwayslink = 1,
        )
        gpu_deps = [name + "_gpu"]
    native.cc_binary(
        name = name,
        linkshared = 1,
        deps = [name + "_kernels", "@local_config_tf//:tf_framework"] + gpu_deps,
    )
    if static_name:
        native.cc_library(
            name = static_name,
            deps = [name + "_kernels"] + gpu_deps,
            alwayslink = 1,
        )
