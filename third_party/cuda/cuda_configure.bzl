"""Repository rule that finds a CUDA toolkit for the GPU kernels.

Search order: CUDA_HOME, CUDA_PATH, the directory above `nvcc` on PATH,
/usr/local/cuda. TFKIT_CUDA=0 turns the GPU build off. Without a toolkit the
generated defs say CUDA_ENABLED = False and only the CPU library builds.
"""

def _candidate_roots(repository_ctx):
    env = repository_ctx.os.environ
    roots = [env.get("CUDA_HOME", ""), env.get("CUDA_PATH", "")]
    nvcc = repository_ctx.which("nvcc")
    if nvcc:
        roots.append(str(repository_ctx.path(str(nvcc)).realpath.dirname.dirname))
    roots.append("/usr/local/cuda")
    return [r for r in roots if r]

def _find_cuda_root(repository_ctx):
    for root in _candidate_roots(repository_ctx):
        path = repository_ctx.path(root)
        if path.get_child("bin").get_child("nvcc").exists and \
           path.get_child("include").get_child("cuda_runtime.h").exists:
            return path
    return None

def _nvcc_version(repository_ctx, nvcc):
    result = repository_ctx.execute([nvcc, "--version"])
    for line in result.stdout.splitlines():
        if "release" in line:
            return line.split("release")[1].split(",")[0].strip()
    return "unknown"

def _write_defs(repository_ctx, enabled, nvcc = "", version = ""):
    repository_ctx.file("defs.bzl", "\n".join([
        '"""CUDA toolkit settings found by cuda_configure (generated)."""',
        "CUDA_ENABLED = %r" % enabled,
        "NVCC = %r" % nvcc,
        "CUDA_VERSION = %r" % version,
        "",
    ]))

def _cuda_configure_impl(repository_ctx):
    wanted = repository_ctx.os.environ.get("TFKIT_CUDA", "auto")
    root = None if wanted == "0" else _find_cuda_root(repository_ctx)
    if root == None:
        if wanted == "1":
            fail("cuda_configure: TFKIT_CUDA=1 but no CUDA toolkit was found " +
                 "(looked at CUDA_HOME, CUDA_PATH, nvcc on PATH, /usr/local/cuda).")
        repository_ctx.template("BUILD", Label("//third_party/cuda:BUILD.none.tpl"), {})
        _write_defs(repository_ctx, False)
        return
    repository_ctx.symlink(root.get_child("include"), "include")
    libdir = root.get_child("lib64")
    if not libdir.exists:
        libdir = root.get_child("lib")
    repository_ctx.symlink(libdir.get_child("libcudart_static.a"), "lib/libcudart_static.a")
    repository_ctx.template("BUILD", Label("//third_party/cuda:BUILD.tpl"), {})
    nvcc = str(root.get_child("bin").get_child("nvcc"))
    _write_defs(repository_ctx, True, nvcc, _nvcc_version(repository_ctx, nvcc))

cuda_configure = repository_rule(
    implementation = _cuda_configure_impl,
    environ = ["CUDA_HOME", "CUDA_PATH", "PATH", "TFKIT_CUDA"],
    local = True,
)
