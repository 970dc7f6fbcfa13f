"""Repository rule that reads TensorFlow's build settings from tf.sysconfig.

Nothing is hard-coded: the include dir, the framework library, the C++
standard, the _GLIBCXX_USE_CXX11_ABI value and the version all come from the
TensorFlow that PYTHON_BIN_PATH (else the workspace's .venv) has installed.
"""

_QUERY = """
import json, tensorflow as tf
print(json.dumps({
    "include": tf.sysconfig.get_include(),
    "libdir": tf.sysconfig.get_lib(),
    "compile_flags": tf.sysconfig.get_compile_flags(),
    "link_flags": tf.sysconfig.get_link_flags(),
    "version": tf.version.VERSION,
    "cxx11_abi": tf.sysconfig.CXX11_ABI_FLAG,
}))
"""

def find_python(repository_ctx):
    """Returns the Python to ask: PYTHON_BIN_PATH, the workspace .venv, python3."""
    env_python = repository_ctx.os.environ.get("PYTHON_BIN_PATH", "")
    if env_python:
        return env_python
    workspace = repository_ctx.path(Label("//:WORKSPACE")).dirname
    venv_python = workspace.get_child(".venv").get_child("bin").get_child("python")
    if venv_python.exists:
        return str(venv_python)
    found = repository_ctx.which("python3")
    if not found:
        fail("tf_configure: no Python found. Set PYTHON_BIN_PATH to a Python " +
             "with tensorflow installed (make setup creates .venv).")
    return str(found)

def _split_flags(flags):
    """Splits tf.sysconfig flags into (std, defines, libname)."""
    std = ""
    defines = []
    libname = ""
    for flag in flags:
        if flag.startswith("--std=") or flag.startswith("-std="):
            std = flag.split("=", 1)[1]
        elif flag.startswith("-D"):
            defines.append(flag[2:])
        elif flag.startswith("-l:"):
            libname = flag[3:]
        elif flag.startswith("-l"):
            libname = "lib" + flag[2:] + ".so"
    return std, defines, libname

def _tf_configure_impl(repository_ctx):
    python = find_python(repository_ctx)
    result = repository_ctx.execute([python, "-c", _QUERY], timeout = 600)
    if result.return_code != 0:
        fail(("tf_configure: could not import tensorflow with {python}:\n{err}\n" +
              "Run `make setup` to create .venv with tensorflow, or set " +
              "PYTHON_BIN_PATH to a Python that has it.").format(
            python = python,
            err = result.stderr[-2000:],
        ))
    info = json.decode(result.stdout.strip().splitlines()[-1])
    std, defines, _ = _split_flags(info["compile_flags"])
    _, _, libname = _split_flags(info["link_flags"])
    if not std:
        fail("tf_configure: tf.sysconfig gave no C++ standard flag: %s" % info["compile_flags"])
    repository_ctx.symlink(info["include"], "include")
    repository_ctx.symlink(info["libdir"] + "/" + libname, "lib/" + libname)
    repository_ctx.template("BUILD", Label("//third_party/tf:BUILD.tpl"), {
        "%{LIBNAME}": libname,
        "%{LIBDIR}": info["libdir"],
    })
    repository_ctx.file("defs.bzl", "\n".join([
        '"""TensorFlow build settings read from tf.sysconfig (generated)."""',
        "TF_VERSION = %r" % info["version"],
        "TF_CXX_STANDARD = %r" % std,
        "TF_CXX11_ABI = %r" % info["cxx11_abi"],
        "TF_DEFINES = %r" % defines,
        "TF_COPTS = %r" % (["-std=" + std] + ["-D" + d for d in defines]),
        "TF_PYTHON = %r" % python,
        "",
    ]))

tf_configure = repository_rule(
    implementation = _tf_configure_impl,
    environ = ["PYTHON_BIN_PATH"],
    local = True,
)
