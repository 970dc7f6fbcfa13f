"""The GPU check: every family's CUDA launchers against its CPU kernels, and
their speed against a device-to-device copy and PyTorch's own kernels.

Run by tools/gpu_check.sh on a GPU machine (no TensorFlow needed: the
kernels come as tfkit_kernels, built with CUDA for the GPU present; the GPU
arrays are PyTorch tensors). Writes gpu_check.json and gpu_check.md to
--out. `--dry-run` prepares every case and its CPU reference without a GPU
(what can be checked on a machine without one).

Numerics: for every family, dtype (float32, float64, float16, bfloat16) and
shape (odd, empty, long rows, many rows), the CUDA result against the CPU
kernels run in float64 on the same (dtype-rounded) inputs; errors are
scaled by 1 + |reference|. Speed: at the shapes of `make bench`, the median
of CUDA-event timings, forward and backward, as GB/s against a copy of the
same bytes and as time against PyTorch's kernel for the same math.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DTYPES = ("float32", "float64", "float16", "bfloat16")
SHAPES = [(512, 1024), (3, 4097), (0, 8), (5, 1), (1, 7), (300, 33), (2, 0)]


def load_module(path: Path, name: str = "tfkit_kernels"):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# CUDA against the CPU kernels, by dtype: the `kernel` column of tfkit's one table.
_TABLE = load_module(ROOT / "tfkit" / "tolerances.py", "tfkit_tolerances").TOLERANCES
TOLERANCE = {name: row.kernel for name, row in _TABLE.items()}


@dataclass
class Case:
    """One numerics case: `run(gpu)` returns {output name: (gpu result as
    float64, CPU reference)}; `tolerance` scales per output."""

    name: str
    run: object
    tolerance: float
    scale: dict = field(default_factory=dict)


class CupyGpu:
    """CuPy arrays for the launchers, where PyTorch is not installed (no
    bfloat16 there: those cases are skipped, and so is the speed part)."""

    name = "CuPy"

    def __init__(self):
        import cupy

        self.cupy = cupy
        self.stream = cupy.cuda.get_current_stream().ptr
        self.types = {"float32": cupy.float32, "float64": cupy.float64, "float16": cupy.float16}

    def put(self, array64: np.ndarray, dtype: str):
        return self.cupy.asarray(array64.astype(self.types[dtype]))

    def empty(self, shape, dtype: str):
        return self.cupy.empty(tuple(shape), dtype=self.types[dtype])

    def put_ids(self, ids: np.ndarray):
        return self.cupy.asarray(ids.astype(np.int64))

    def put_mask(self, mask: np.ndarray):
        return self.cupy.asarray(mask.astype(bool))

    @staticmethod
    def get(array) -> np.ndarray:
        return array.get().astype(np.float64)

    def name_of_device(self) -> str:
        return self.cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()


class Gpu:
    """PyTorch CUDA tensors for the launchers, and CUDA-event timing."""

    name = "PyTorch"

    def __init__(self):
        import torch

        self.torch = torch
        self.stream = torch.cuda.current_stream().cuda_stream
        self.types = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
                      "bfloat16": torch.bfloat16}  # fmt: skip

    def put(self, array64: np.ndarray, dtype: str):
        return self.torch.tensor(array64).to(device="cuda", dtype=self.types[dtype]).contiguous()

    def empty(self, shape, dtype: str):
        return self.torch.empty(tuple(shape), device="cuda", dtype=self.types[dtype])

    def put_ids(self, ids: np.ndarray):
        return self.torch.tensor(ids.astype(np.int64), device="cuda")

    def put_mask(self, mask: np.ndarray):
        return self.torch.tensor(mask.astype(bool), device="cuda")

    @staticmethod
    def get(tensor) -> np.ndarray:
        return tensor.double().cpu().numpy()

    def name_of_device(self) -> str:
        return self.torch.cuda.get_device_name()

    def median_ms(self, fn, repeats: int = 20) -> float:
        for _ in range(3):
            fn()
        times = []
        for _ in range(repeats):
            start, end = self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return float(np.median(times))


def rounded(array64: np.ndarray, dtype: str) -> np.ndarray:
    """The float64 values of array64 stored in dtype (round to nearest even)."""
    if dtype == "float64":
        return array64
    if dtype == "bfloat16":
        bits = array64.astype(np.float32).view(np.uint32).astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.astype(np.uint32).view(np.float32).astype(np.float64)
    return array64.astype(dtype).astype(np.float64)


def acc(dtype: str) -> str:
    return "float64" if dtype == "float64" else "float32"


def normal(shape, seed, scale=1.0, loc=0.0, dtype="float64") -> np.ndarray:
    return rounded(np.random.default_rng(seed).normal(loc, scale, size=shape), dtype)


# Numerics cases --------------------------------------------------------------


def norm_case(k, dtype, rows, cols, center, offset=0.0, tolerance=None):
    x, dy = normal((rows, cols), 1, 1.5, offset, dtype), normal((rows, cols), 2, dtype=dtype)
    gamma, beta = normal(cols, 3, dtype=dtype), normal(cols, 4, dtype=dtype)
    dstat = normal(rows, 5, dtype=acc(dtype))
    if center:
        y, mean, rstd = k.layer_norm(x, gamma, beta, 1e-5)
        dx, dgamma, dbeta = k.layer_norm_grad(dy, x, gamma, mean, rstd, dstat, dstat)
    else:
        y, rstd = k.rms_norm(x, gamma, 1e-5)
        dx, dgamma = k.rms_norm_grad(dy, x, gamma, rstd, dstat)

    def run(gpu):
        g = {n: gpu.put(v, dtype) for n, v in (("x", x), ("dy", dy), ("gamma", gamma), ("beta", beta))}
        stat = gpu.put(dstat, acc(dtype))
        out = {n: gpu.empty(s, d) for n, s, d in (("y", x.shape, dtype), ("mean", [rows], acc(dtype)),
               ("rstd", [rows], acc(dtype)), ("dx", x.shape, dtype), ("dgamma", [cols], dtype),
               ("dbeta", [cols], dtype))}  # fmt: skip
        if center:
            k.cuda.layer_norm(g["x"], g["gamma"], g["beta"], out["y"], out["mean"], out["rstd"], 1e-5, gpu.stream)
            k.cuda.layer_norm_grad(g["dy"], g["x"], g["gamma"], out["mean"], out["rstd"], stat, stat, out["dx"],
                                   out["dgamma"], out["dbeta"], gpu.stream)  # fmt: skip
            wanted = {"y": y, "mean": mean, "rstd": rstd, "dx": dx, "dgamma": dgamma, "dbeta": dbeta}
        else:
            k.cuda.rms_norm(g["x"], g["gamma"], out["y"], out["rstd"], 1e-5, gpu.stream)
            k.cuda.rms_norm_grad(g["dy"], g["x"], g["gamma"], out["rstd"], stat, out["dx"], out["dgamma"], gpu.stream)
            wanted = {"y": y, "rstd": rstd, "dx": dx, "dgamma": dgamma}
        return {n: (gpu.get(out[n]), w) for n, w in wanted.items()}

    family = "layer_norm" if center else "rms_norm"
    return Case(f"{family} {dtype} [{rows}, {cols}] offset {offset:g}", run, tolerance or TOLERANCE[dtype],
                {"dgamma": 1 + np.sqrt(rows), "dbeta": 1 + np.sqrt(rows)})


def activation_cases(k, dtype, rows, cols, name):
    x, dy = normal((rows, cols), 1, 3.0, dtype=dtype), normal((rows, cols), 3, dtype=dtype)
    bias = normal(cols, 2, dtype=dtype)
    y = k.bias_activation(x, bias, name)
    dx, dbias = k.bias_activation_grad(dy, x, bias, name)

    def run_bias(gpu):
        gx, gb, gdy = gpu.put(x, dtype), gpu.put(bias, dtype), gpu.put(dy, dtype)
        gy, gdx, gdb = gpu.empty(x.shape, dtype), gpu.empty(x.shape, dtype), gpu.empty([cols], dtype)
        k.cuda.bias_activation(gx, gb, gy, name, gpu.stream)
        k.cuda.bias_activation_grad(gdy, gx, gb, gdx, gdb, name, gpu.stream)
        return {"y": (gpu.get(gy), y), "dx": (gpu.get(gdx), dx), "dbias": (gpu.get(gdb), dbias)}

    cases = [Case(f"bias_activation {name} {dtype} [{rows}, {cols}]", run_bias, TOLERANCE[dtype],
                  {"dbias": 1 + np.sqrt(rows)})]  # fmt: skip
    if cols % 2 == 0:
        gy_ref = k.gated_activation(x, name)
        gdy = normal(gy_ref.shape, 4, dtype=dtype)
        gdx_ref = k.gated_activation_grad(gdy, x, name)

        def run_gated(gpu):
            gx, gd = gpu.put(x, dtype), gpu.put(gdy, dtype)
            gy, gdx = gpu.empty(gy_ref.shape, dtype), gpu.empty(x.shape, dtype)
            k.cuda.gated_activation(gx, gy, name, gpu.stream)
            k.cuda.gated_activation_grad(gd, gx, gdx, name, gpu.stream)
            return {"y": (gpu.get(gy), gy_ref), "dx": (gpu.get(gdx), gdx_ref)}

        cases.append(Case(f"gated_activation {name} {dtype} [{rows}, {cols}]", run_gated, TOLERANCE[dtype]))
    return cases


def inv_freq(dim: int, dtype: str) -> np.ndarray:
    exponents = np.arange(0, dim, 2, dtype=acc(dtype)) / np.array(dim, acc(dtype))
    return (np.array(10000.0, acc(dtype)) ** -exponents).astype(np.float64)


def rotary_case(k, dtype, batch, seq, heads, dim, per_batch, interleaved, start):
    x = normal((batch, seq, heads, dim), 1, dtype=dtype)
    rows = batch if per_batch else 1
    positions = (np.arange(seq)[None] + start + 3 * np.arange(rows)[:, None]).astype(acc(dtype)).astype(np.float64)
    freq = inv_freq(dim, dtype)
    y = k.rotary_embedding(x, positions, freq, interleaved)

    def run(gpu):
        gx, gp, gf = gpu.put(x, dtype), gpu.put(positions, acc(dtype)), gpu.put(freq, acc(dtype))
        gy, gback = gpu.empty(x.shape, dtype), gpu.empty(x.shape, dtype)
        k.cuda.rotary_embedding(gx, gp, gf, gy, interleaved, gpu.stream)
        k.cuda.rotary_embedding_grad(gy, gp, gf, gback, interleaved, gpu.stream)
        return {"y": (gpu.get(gy), y), "inverse": (gpu.get(gback), x)}

    layout = "interleaved" if interleaved else "half"
    return Case(f"rotary {layout} {dtype} [{batch}, {seq}, {heads}, {dim}] from {start}", run, 2 * TOLERANCE[dtype])


def resampler_case(k, dtype, batch, height, width, channels, points, boundary, deterministic, specials=False):
    """`specials`: NaN and the infinities at a few pixels (a clamped
    coordinate's gradient is 0 even there)."""
    data = normal((batch, height, width, channels), 1, dtype=dtype)
    if specials:
        count = min(3, data.size)
        np.put(data, np.linspace(0, data.size - 1, count).astype(int), [np.nan, np.inf, -np.inf][:count])
    spread = np.random.default_rng(2).uniform(-1.5, 1.0, size=(batch, points, 2)) * [width + 1.5, height + 1.5]
    warp = rounded(spread + np.array([width / 2, height / 2]), dtype)
    grad = normal((batch, points, channels), 3, dtype=dtype)
    out = k.resampler(data, warp, boundary)
    grad_data, grad_warp = k.resampler_grad(data, warp, grad, boundary)

    def run(gpu):
        gd, gw, gg = gpu.put(data, dtype), gpu.put(warp, dtype), gpu.put(grad, dtype)
        go, gdd, gdw, again = (gpu.empty(a.shape, dtype) for a in (out, data, warp, data))
        k.cuda.resampler(gd, gw, go, boundary, gpu.stream)
        k.cuda.resampler_grad(gd, gw, gg, gdd, gdw, boundary, deterministic, gpu.stream)
        results = {"out": (gpu.get(go), out), "grad_data": (gpu.get(gdd), grad_data),
                   "grad_warp": (gpu.get(gdw), grad_warp)}  # fmt: skip
        if deterministic:
            k.cuda.resampler_grad(gd, gw, gg, again, gdw, boundary, True, gpu.stream)
            results["grad_data repeated"] = (gpu.get(again), results["grad_data"][0])
        return results

    order = "ordered" if deterministic else "atomic"
    shape = f"[{batch}, {height}, {width}, {channels}] at {points} points"
    contributions = 1 + np.sqrt(batch * points / max(1, height * width))
    shape += " with NaN and infinities" if specials else ""
    return Case(f"resampler {boundary} {order} {dtype} {shape}", run, 2 * TOLERANCE[dtype],
                {"grad_data": contributions, "grad_warp": 1 + np.sqrt(channels), "grad_data repeated": 0.0})


def deform_conv_case(k, dtype, x_shape, kernel_shape, attrs, deterministic, spread=1.5):
    """CUDA against the CPU kernels in float64 on the dtype-rounded inputs,
    offsets moving taps up to `spread` pixels (some beyond the borders)."""
    batch, height, width, _ = x_shape
    rng = np.random.default_rng(5)
    taps = attrs["offset_groups"] * kernel_shape[0] * kernel_shape[1]
    out_shape = deform_output_shape(x_shape, kernel_shape, attrs)
    x = normal(x_shape, 1, dtype=dtype)
    kernel = normal(kernel_shape, 2, scale=0.2, dtype=dtype)
    offsets = rounded(rng.uniform(-spread, spread, size=(*out_shape[:3], 2 * taps)), dtype)
    mask = rounded(rng.uniform(0, 2, size=(*out_shape[:3], taps)), dtype)
    grad = normal(out_shape, 3, dtype=dtype)
    out = k.deform_conv2d(x, offsets, mask, kernel, **attrs)
    grads = k.deform_conv2d_grad(x, offsets, mask, kernel, grad, **attrs)
    names = ("grad_x", "grad_offsets", "grad_mask", "grad_kernel")

    def run(gpu):
        inputs = [gpu.put(a, dtype) for a in (x, offsets, mask, kernel)]
        gg, go = gpu.put(grad, dtype), gpu.empty(out.shape, dtype)
        outs = [gpu.empty(a.shape, dtype) for a in (x, offsets, mask, kernel)]
        k.cuda.deform_conv2d(*inputs, go, **attrs, stream=gpu.stream)
        k.cuda.deform_conv2d_grad(*inputs, gg, *outs, **attrs, deterministic=deterministic, stream=gpu.stream)
        results = {"out": (gpu.get(go), out)}
        results.update({name: (gpu.get(o), want) for name, o, want in zip(names, outs, grads)})
        if deterministic:
            again = [gpu.empty(a.shape, dtype) for a in (x, offsets, mask, kernel)]
            k.cuda.deform_conv2d_grad(*inputs, gg, *again, **attrs, deterministic=True, stream=gpu.stream)
            results["grad_x repeated"] = (gpu.get(again[0]), results["grad_x"][0])
        return results

    order = "ordered" if deterministic else "atomic"
    depth = np.sqrt(kernel_shape[0] * kernel_shape[1] * kernel_shape[2])
    rows = np.sqrt(np.prod(out_shape[:3]))
    scale = {"out": depth, "grad_x": 1 + np.sqrt(kernel_shape[3] * taps), "grad_offsets": depth * np.sqrt(out_shape[3]),
             "grad_mask": depth * np.sqrt(out_shape[3]), "grad_kernel": 1 + rows, "grad_x repeated": 0.0}
    return Case(f"deform_conv2d {order} {dtype} x {list(x_shape)} kernel {list(kernel_shape)} {attrs}", run,
                2 * TOLERANCE[dtype], scale)


def deform_output_shape(x_shape, kernel_shape, attrs) -> tuple:
    """tf.nn.conv2d's output shape ("valid" or "same" padding)."""
    sizes = []
    for axis, size in ((0, x_shape[1]), (1, x_shape[2])):
        extent = (kernel_shape[axis] - 1) * attrs["dilations"][axis] + 1
        stride = attrs["strides"][axis]
        sizes.append(-(-size // stride) if attrs["padding"] == "same" else max(0, (size - extent) // stride + 1))
    return (x_shape[0], *sizes, kernel_shape[3])


def deform_conv_cases(k) -> list[Case]:
    plain = {"strides": [1, 1], "padding": "valid", "dilations": [1, 1], "groups": 1, "offset_groups": 1}
    grouped = {"strides": [2, 1], "padding": "same", "dilations": [1, 2], "groups": 2, "offset_groups": 2}
    cases = []
    for dtype in DTYPES:
        for deterministic in (False, True):
            cases += [
                deform_conv_case(k, dtype, (2, 17, 15, 16), (3, 3, 16, 24), plain, deterministic),
                deform_conv_case(k, dtype, (1, 9, 11, 8), (3, 2, 4, 6), grouped, deterministic, spread=4.0),
                deform_conv_case(k, dtype, (0, 5, 5, 2), (3, 3, 2, 2), plain, deterministic),
                deform_conv_case(k, dtype, (1, 2, 2, 3), (3, 3, 3, 1), {**plain, "padding": "same"}, deterministic),
            ]
    return cases


def interaction_case(k, dtype, batch, features, dim, self_interaction):
    x = normal((batch, features, dim), 4, dtype=dtype)
    out = k.dot_interaction(x, self_interaction)
    grad = normal(out.shape, 5, dtype=dtype)
    grad_x = k.dot_interaction_grad(x, grad, self_interaction)

    def run(gpu):
        gx, gg = gpu.put(x, dtype), gpu.put(grad, dtype)
        go, gdx = gpu.empty(out.shape, dtype), gpu.empty(x.shape, dtype)
        k.cuda.dot_interaction(gx, go, self_interaction, gpu.stream)
        k.cuda.dot_interaction_grad(gx, gg, gdx, self_interaction, gpu.stream)
        return {"out": (gpu.get(go), out), "grad_features": (gpu.get(gdx), grad_x)}

    pairs = "with self" if self_interaction else "pairs"
    terms = {"out": 1 + np.sqrt(dim), "grad_features": 1 + np.sqrt(features)}
    return Case(f"dot_interaction {pairs} {dtype} [{batch}, {features}, {dim}]", run, 2 * TOLERANCE[dtype], terms)


def bags_of(lengths, vocab, seed):
    """Flat ids (0 and vocab - 1 among them) and the row splits of bags of `lengths`."""
    splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.random.default_rng(seed).integers(0, vocab, size=splits[-1]).astype(np.int64)
    ids[: min(2, ids.size)] = [0, vocab - 1][: min(2, ids.size)]
    return ids, splits


def embedding_case(k, dtype, vocab, dim, lengths, combiner, weighted):
    ids, splits = bags_of(lengths, vocab, 7)
    params, dy = normal((vocab, dim), 1, dtype=dtype), normal((len(lengths), dim), 2, dtype=dtype)
    weights = normal(ids.size, 3, dtype=dtype) if weighted else None
    y = k.embedding_bag(ids, splits, params, weights, combiner)
    d_values, d_weights = k.embedding_bag_grad(ids, splits, params, weights, dy, combiner)

    def run(gpu):
        gi, gs, gp, gdy = gpu.put_ids(ids), gpu.put_ids(splits), gpu.put(params, dtype), gpu.put(dy, dtype)
        gw = gpu.put(weights, dtype) if weighted else None
        gy, gdv = gpu.empty([len(lengths), dim], dtype), gpu.empty([ids.size, dim], dtype)
        gdw = gpu.empty([ids.size], dtype) if weighted else None
        k.cuda.embedding_bag(gi, gs, gp, gw, gy, combiner, gpu.stream)
        k.cuda.embedding_bag_grad(gi, gs, gp, gw, gdy, gdv, gdw, combiner, gpu.stream)
        out = {"y": (gpu.get(gy), y), "d_values": (gpu.get(gdv), d_values)}
        if weighted:
            out["d_weights"] = (gpu.get(gdw), d_weights)
        return out

    kind = "weighted " if weighted else ""
    name = f"embedding_bag {kind}{combiner} {dtype} [{vocab}, {dim}] bags of {sorted(set(lengths))[:4]}"
    # A bag's sum over its length in the accumulation type, then one rounding.
    return Case(name, run, TOLERANCE[dtype] * (1 + max(lengths, default=0) / 64), {"d_weights": dim / 8})


def embedding_bad_ids_case(k, bad):
    """A bad id or split raises ValueError naming it, never reads out of bounds."""
    if bad == "splits":
        ids, splits = np.array([1, 2]), np.array([0, 3, 2])
    else:
        ids, splits = np.array([1, bad, 2]), np.array([0, 2, 3])
    params = normal((5, 4), 1, dtype="float32")

    def run(gpu):
        y = gpu.empty([len(splits) - 1, 4], "float32")
        try:
            k.cuda.embedding_bag(gpu.put_ids(ids), gpu.put_ids(splits), gpu.put(params, "float32"), None, y)
        except ValueError as err:
            said = ("row_splits" if bad == "splits" else f"got {bad}") in str(err)
            return {"raised ValueError naming it": (np.array([float(said)]), np.array([1.0]))}
        return {"raised ValueError naming it": (np.array([0.0]), np.array([1.0]))}

    return Case(f"embedding_bag bad {'row_splits' if bad == 'splits' else f'id {bad}'}", run, 0.0)


def embedding_cases(k) -> list[Case]:
    cases = [embedding_bad_ids_case(k, bad) for bad in (-1, 5, 1 << 40, "splits")]
    for dtype in DTYPES:
        for combiner in k.COMBINERS:
            for weighted in (False, True):
                cases += [
                    embedding_case(k, dtype, 1000, 64, [32] * 256, combiner, weighted),
                    embedding_case(k, dtype, 11, 5, [3, 0, 1, 7, 0], combiner, weighted),
                    embedding_case(k, dtype, 50, 33, [1000, 2], combiner, weighted),
                    embedding_case(k, dtype, 7, 3, [0, 0], combiner, weighted),
                ]
    return cases


# NaN, +-inf, +-the largest finite value, +-the smallest subnormal and a
# logarithmic sweep between, of each dtype.
_LARGEST = {"float32": 3.4028234663852886e38, "float64": 1.7976931348623157e308, "float16": 65504.0,
            "bfloat16": 3.3895313892515355e38}  # fmt: skip
_SMALLEST = {"float32": 2.0**-149, "float64": 2.0**-1074, "float16": 2.0**-24, "bfloat16": 2.0**-133}


def attention_case(k, dtype, sizes, is_causal=False, bias=None, mask=None, rate=0.0):
    """Forward (output, lse) and gradients (dquery, dkey, dvalue, dbias) of
    query [B, T, N, H], key and value [B, S, K, H]; bias a shape, mask
    "padding" ([B, 1, 1, S]) or a shape; rate the dropout's (its bits must
    be the CPU kernels')."""
    batch, target, source, heads, kv_heads, dim = sizes
    shapes = [(batch, target, heads, dim), (batch, source, kv_heads, dim), (batch, source, kv_heads, dim)]
    q, kk, v = (normal(shape, seed, dtype=dtype) for seed, shape in enumerate(shapes))
    b = normal(bias, 3, dtype=dtype) if bias is not None else None
    rng = np.random.default_rng(4)
    if mask == "padding":
        lengths = rng.integers(0, source + 1, size=batch)
        m = (np.arange(source)[None, :] < lengths[:, None])[:, None, None, :]
    else:
        m = rng.uniform(size=mask) < 0.7 if mask is not None else None
    attrs = {"scale": None, "is_causal": is_causal, "dropout_rate": rate, "seed": (7, 8)}
    out, lse = k.dot_product_attention(q, kk, v, b, m, **attrs)
    dout = normal(out.shape, 5, dtype=dtype)
    wanted = dict(zip(("dquery", "dkey", "dvalue", "dbias"),
                      k.dot_product_attention_grad(dout, q, kk, v, out, lse, b, m, **attrs), strict=True))  # fmt: skip
    wanted = {"output": out, "lse": lse, **{n: w for n, w in wanted.items() if w is not None}}

    def run(gpu):
        g = {n: gpu.put(a, dtype) for n, a in (("q", q), ("k", kk), ("v", v), ("dout", dout))}
        gb = gpu.put(b, dtype) if b is not None else None
        gm = gpu.put_mask(m) if m is not None else None
        res = {"output": gpu.empty(q.shape, dtype), "lse": gpu.empty(lse.shape, acc(dtype)),
               "dquery": gpu.empty(q.shape, dtype), "dkey": gpu.empty(kk.shape, dtype),
               "dvalue": gpu.empty(kk.shape, dtype)}  # fmt: skip
        if b is not None:
            res["dbias"] = gpu.empty(b.shape, dtype)
        k.cuda.dot_product_attention(g["q"], g["k"], g["v"], res["output"], res["lse"], gb, gm, **attrs,
                                     stream=gpu.stream)  # fmt: skip
        k.cuda.dot_product_attention_grad(g["dout"], g["q"], g["k"], g["v"], res["output"], res["lse"], res["dquery"],
                                          res["dkey"], res["dvalue"], res.get("dbias"), gb, gm, **attrs,
                                          stream=gpu.stream)  # fmt: skip
        return {n: (gpu.get(res[n]), w) for n, w in wanted.items()}

    extra = f"{' causal' if is_causal else ''}{f' bias {list(bias)}' if bias else ''}{f' mask {mask}' if mask else ''}"
    name = f"attention {dtype} [{batch}, {target}, {source}, {heads}, {kv_heads}, {dim}]{extra} dropout {rate}"
    # The sums over keys or queries of a gradient grow with their count.
    scale = {"dkey": 1 + np.sqrt(target), "dvalue": 1 + np.sqrt(target), "dquery": 1 + np.sqrt(source),
             "dbias": 1 + np.sqrt(batch * heads * target)}  # fmt: skip
    return Case(name, run, 2 * TOLERANCE[dtype], scale)


def attention_cases(k) -> list[Case]:
    cases = []
    for dtype in DTYPES:
        cases += [
            attention_case(k, dtype, (2, 64, 64, 4, 4, 64)),
            attention_case(k, dtype, (2, 100, 130, 8, 2, 64), is_causal=True),  # GQA, T != S
            attention_case(k, dtype, (1, 37, 300, 4, 1, 32), mask="padding"),  # MQA, padding mask
            attention_case(k, dtype, (3, 1, 1000, 4, 2, 128), mask="padding"),  # decode
            attention_case(k, dtype, (2, 20, 30, 2, 2, 16), bias=(1, 2, 20, 30), mask=(2, 1, 20, 30)),
            attention_case(k, dtype, (2, 50, 40, 4, 2, 8), is_causal=True, bias=(2, 1, 1, 40), rate=0.3),
            attention_case(k, dtype, (2, 70, 90, 4, 2, 64), is_causal=True, rate=0.2),  # tensor cores, dropout
            attention_case(k, dtype, (1, 3, 0, 2, 2, 8)),
            attention_case(k, dtype, (1, 0, 5, 2, 2, 8)),
            attention_case(k, dtype, (1, 3, 0, 2, 2, 64)),
        ]
    return cases


def attention_speed_rows(k, gpu) -> list[dict]:
    """The fused attention against PyTorch's scaled_dot_product_attention
    (its flash backend for the half types), in TFLOP/s with the
    FlashAttention papers' count: forward 4 B N T S H, halved when causal;
    backward 2.5x the forward."""
    return [row for dtype in ("float16", "bfloat16", "float32") for causal in (False, True)
            for row in attention_speed(k, gpu, dtype, causal)]  # fmt: skip


def attention_speed(k, gpu, dtype: str, causal: bool, batch=4, heads=8, seq=2048, dim=64) -> list[dict]:
    torch, F = gpu.torch, gpu.torch.nn.functional
    q, key, v, dout = (torch.randn(batch, seq, heads, dim, device="cuda", dtype=gpu.types[dtype]) for _ in range(4))
    out, lse = torch.empty_like(q), torch.empty(batch, heads, seq, device="cuda")
    dq, dk, dv = (torch.empty_like(q) for _ in range(3))
    attrs = {"is_causal": causal, "stream": gpu.stream}
    ours_fwd = gpu.median_ms(lambda: k.cuda.dot_product_attention(q, key, v, out, lse, **attrs), 5)
    grads = (dq, dk, dv)
    ours_bwd = gpu.median_ms(lambda: k.cuda.dot_product_attention_grad(dout, q, key, v, out, lse, *grads, **attrs), 5)
    tq, tk, tv = (t.transpose(1, 2).contiguous().requires_grad_(True) for t in (q, key, v))
    backends = list(torch.nn.attention.SDPBackend)
    if dtype != "float32":
        backends = [torch.nn.attention.SDPBackend.FLASH_ATTENTION]
    with torch.nn.attention.sdpa_kernel(backends):
        theirs_fwd = gpu.median_ms(lambda: F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal), 5)
        y = F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
        dy = torch.randn_like(y)
        theirs_bwd = gpu.median_ms(lambda: torch.autograd.grad(y, (tq, tk, tv), dy, retain_graph=True), 5)
    flops = 4 * batch * heads * seq * seq * dim / (2 if causal else 1)
    name = f"attention {dtype}{' causal' if causal else ''} [{batch}, {heads}, {seq}, {dim}]"
    return [{"op": name, "mode": mode, "tfkit_ms": ours, "torch_ms": theirs, "tfkit_tflops": count / ours / 1e9,
             "torch_tflops": count / theirs / 1e9, "vs_torch": theirs / ours}
            for mode, ours, theirs, count in (("forward", ours_fwd, theirs_fwd, flops),
                                              ("backward", ours_bwd, theirs_bwd, 2.5 * flops))]  # fmt: skip


def attention_markdown(rows: list[dict]) -> str:
    lines = ["", "| attention | mode | tfkit ms | tfkit TFLOP/s | PyTorch SDPA ms | PyTorch TFLOP/s | vs PyTorch |",
             "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['op']} | {r['mode']} | {r['tfkit_ms']:.3f} | {r['tfkit_tflops']:.1f} | "
                     f"{r['torch_ms']:.3f} | {r['torch_tflops']:.1f} | {r['vs_torch']:.2f}x |")  # fmt: skip
    return "\n".join(lines) + "\n"


def edge_values(dtype: str) -> np.ndarray:
    sweep = np.logspace(np.log10(_SMALLEST[dtype]), np.log10(_LARGEST[dtype]), 1021)
    values = np.concatenate([[np.nan, np.inf, -np.inf, 0.0], sweep, -sweep])
    return rounded(values, dtype).reshape(1, -1)


def activation_edge_case(k, dtype, name):
    """The activations and their derivatives over the whole float range."""
    x = edge_values(dtype)
    bias, dy = np.zeros(x.shape[1]), np.ones_like(x)
    y = k.bias_activation(x, bias, name)
    dx, _ = k.bias_activation_grad(dy, x, bias, name)

    def run(gpu):
        gx, gb, gdy = gpu.put(x, dtype), gpu.put(bias, dtype), gpu.put(dy, dtype)
        gy, gdx, gdb = gpu.empty(x.shape, dtype), gpu.empty(x.shape, dtype), gpu.empty(bias.shape, dtype)
        k.cuda.bias_activation(gx, gb, gy, name, gpu.stream)
        k.cuda.bias_activation_grad(gdy, gx, gb, gdx, gdb, name, gpu.stream)
        return {"y": (gpu.get(gy), rounded(y, dtype)), "dx": (gpu.get(gdx), rounded(dx, dtype))}

    return Case(f"bias_activation {name} {dtype} edge values", run, TOLERANCE[dtype])


def numerics_cases(k) -> list[Case]:
    cases = []
    for dtype in DTYPES:
        for rows, cols in SHAPES:
            cases += [norm_case(k, dtype, rows, cols, center) for center in (True, False)]
            for name in k.ACTIVATIONS:
                cases += activation_cases(k, dtype, rows, cols, name)
        cases += [activation_edge_case(k, dtype, name) for name in k.ACTIVATIONS]
        for interleaved in (False, True):
            cases += [
                rotary_case(k, dtype, 8, 512, 16, 64, False, interleaved, 0),
                rotary_case(k, dtype, 2, 7, 3, 10, True, interleaved, 5),
                rotary_case(k, dtype, 1, 4, 1, 2, False, interleaved, 0),
                rotary_case(k, dtype, 3, 5, 1, 8, False, interleaved, 100000),
                rotary_case(k, dtype, 0, 4, 2, 8, False, interleaved, 0),
            ]
        for boundary in k.BOUNDARIES:
            for deterministic in (False, True):
                cases += [
                    resampler_case(k, dtype, 4, 32, 48, 16, 1500, boundary, deterministic),
                    resampler_case(k, dtype, 2, 1, 5, 3, 40, boundary, deterministic),
                    resampler_case(k, dtype, 1, 3, 3, 70, 5000, boundary, deterministic),
                    resampler_case(k, dtype, 0, 3, 3, 2, 4, boundary, deterministic),
                    resampler_case(k, dtype, 1, 1, 2, 1, 40, boundary, deterministic, specials=True),
                    resampler_case(k, dtype, 2, 4, 5, 1, 200, boundary, deterministic, specials=True),
                ]
        for self_interaction in (False, True):
            cases += [
                interaction_case(k, dtype, 64, 27, 128, self_interaction),
                interaction_case(k, dtype, 3, 100, 200, self_interaction),  # not in shared memory
                interaction_case(k, dtype, 2, 5, 3, self_interaction),
                interaction_case(k, dtype, 2, 1, 4, self_interaction),
                interaction_case(k, dtype, 0, 4, 3, self_interaction),
                interaction_case(k, dtype, 2, 3, 0, self_interaction),
            ]
    cases += embedding_cases(k)
    cases += attention_cases(k)
    cases += deform_conv_cases(k)
    for center in (True, False):  # accuracy: large offsets, one 16M-long row
        cases += [norm_case(k, "float32", 64, 1024, center, offset, 1e-4) for offset in (1e2, 1e4)]
        cases.append(norm_case(k, "float32", 1, 1 << 24, center, 0.0, 1e-5))
    return cases


def many_rows_checks(k, gpu) -> list[dict]:
    """2**25 rows of one column with dy = 1: dbeta and dbias must be the row
    count exactly (a float32 running sum stops at 2**24)."""
    rows, torch = 1 << 25, gpu.torch
    ones, zeros = torch.ones(rows, 1, device="cuda"), torch.zeros(rows, 1, device="cuda")
    stats = torch.zeros(rows, device="cuda")
    dx, d1, d2 = torch.empty(rows, 1, device="cuda"), torch.empty(1, device="cuda"), torch.empty(1, device="cuda")
    one, zero = torch.ones(1, device="cuda"), torch.zeros(1, device="cuda")
    k.cuda.layer_norm_grad(ones, zeros, one, stats, torch.ones(rows, device="cuda"), stats, stats, dx, d1, d2,
                           gpu.stream)  # fmt: skip
    dbeta = float(d2.item())
    k.cuda.bias_activation_grad(ones, zeros, zero, dx, d1, "linear", gpu.stream)
    dbias = float(d1.item())
    return [{"case": "layer_norm dbeta over 2**25 rows", "passed": dbeta == rows, "worst": abs(dbeta - rows)},
            {"case": "bias_activation dbias over 2**25 rows", "passed": dbias == rows, "worst": abs(dbias - rows)}]


def check(case: Case, gpu) -> dict:
    """NaN and the infinities where the reference has them, finite values
    within the tolerance as |error| / (1 + |reference|)."""
    worst, failed = 0.0, []
    for name, (got, want) in case.run(gpu).items():
        tolerance = case.tolerance * case.scale.get(name, 1.0)
        if not np.array_equal(np.isnan(got), np.isnan(want)):
            failed.append(f"{name} NaN where the reference has none, or none where it has")
        if not np.array_equal(got[np.isinf(want)], want[np.isinf(want)]):
            failed.append(f"{name} not the reference's infinities")
        finite = np.isfinite(want)
        with np.errstate(invalid="ignore"):
            err = float(np.max(np.abs(got[finite] - want[finite]) / (1 + np.abs(want[finite])), initial=0.0))
        if not err <= tolerance:
            failed.append(f"{name} {err:.3g} > {tolerance:.3g}")
        worst = max(worst, err)
    return {"case": case.name, "passed": not failed, "worst": worst, "failures": failed}


# Speed -------------------------------------------------------------------------


def speed_rows(k, gpu) -> list[dict]:
    """Each launcher at `make bench`'s shapes: GB/s against a copy of the
    same bytes, and time against PyTorch's kernel for the same math."""
    torch, F, s = gpu.torch, gpu.torch.nn.functional, gpu.stream
    rows = []

    def add(name, mode, ours, theirs, theirs_name, nbytes):
        copy_src = torch.empty(nbytes // 8, device="cuda")  # a copy of nbytes / 2 moves nbytes
        copy_dst = torch.empty_like(copy_src)
        copy_ms = gpu.median_ms(lambda: copy_dst.copy_(copy_src))
        ours_ms, theirs_ms = gpu.median_ms(ours), gpu.median_ms(theirs)
        gbps = nbytes / ours_ms / 1e6
        rows.append({"op": name, "mode": mode, "tfkit_ms": ours_ms, "torch_ms": theirs_ms, "torch": theirs_name,
                     "vs_torch": theirs_ms / ours_ms, "gbps": gbps, "copy_gbps": nbytes / copy_ms / 1e6,
                     "pct_of_copy": 100 * copy_ms / ours_ms})  # fmt: skip

    def grad_of(fn, *inputs):
        for t in inputs:
            t.requires_grad_(True)
        out = fn()
        dy = torch.randn_like(out)
        return lambda: torch.autograd.grad(out, inputs, dy, retain_graph=True)

    x, g, b = torch.randn(8192, 1024, device="cuda"), torch.randn(1024, device="cuda"), torch.randn(1024, device="cuda")
    y, mean, rstd = torch.empty_like(x), torch.empty(8192, device="cuda"), torch.empty(8192, device="cuda")
    dx, dg, db, dstat = torch.empty_like(x), torch.empty_like(g), torch.empty_like(b), torch.zeros(8192, device="cuda")
    nb = x.numel() * 4
    add("LayerNorm", "forward", lambda: k.cuda.layer_norm(x, g, b, y, mean, rstd, 1e-5, s),
        lambda: F.layer_norm(x, (1024,), g, b), "F.layer_norm", 2 * nb)  # fmt: skip
    k.cuda.layer_norm(x, g, b, y, mean, rstd, 1e-5, s)
    add("LayerNorm", "backward", lambda: k.cuda.layer_norm_grad(x, x, g, mean, rstd, dstat, dstat, dx, dg, db, s),
        grad_of(lambda: F.layer_norm(xt, (1024,), gt, bt), xt := x.clone(), gt := g.clone(), bt := b.clone()),
        "F.layer_norm backward", 3 * nb)  # fmt: skip
    add("RMSNorm", "forward", lambda: k.cuda.rms_norm(x, g, y, rstd, 1e-6, s),
        lambda: F.rms_norm(x, (1024,), g, 1e-6), "F.rms_norm", 2 * nb)  # fmt: skip
    add("RMSNorm", "backward", lambda: k.cuda.rms_norm_grad(x, x, g, rstd, dstat, dx, dg, s),
        grad_of(lambda: F.rms_norm(xr, (1024,), gr, 1e-6), xr := x.clone(), gr := g.clone()),
        "F.rms_norm backward", 3 * nb)  # fmt: skip

    x, bias = torch.randn(8192, 4096, device="cuda"), torch.randn(4096, device="cuda")
    y, dx, dbias = torch.empty_like(x), torch.empty_like(x), torch.empty_like(bias)
    nb = x.numel() * 4
    for name, torch_fn in (("gelu", F.gelu), ("silu", F.silu)):
        add(f"bias+{name}", "forward", lambda n=name: k.cuda.bias_activation(x, bias, y, n, s),
            lambda f=torch_fn: f(x + bias), f"F.{name}(x + b)", 2 * nb)  # fmt: skip
        add(f"bias+{name}", "backward", lambda n=name: k.cuda.bias_activation_grad(x, x, bias, dx, dbias, n, s),
            grad_of(lambda f=torch_fn: f(xa + ba), xa := x.clone(), ba := bias.clone()),
            f"F.{name}(x + b) backward", 3 * nb)  # fmt: skip

    x2 = torch.randn(8192, 2 * 4096, device="cuda")
    y2, dy2, dx2 = torch.empty(8192, 4096, device="cuda"), torch.randn(8192, 4096, device="cuda"), torch.empty_like(x2)
    swiglu = lambda t: F.silu(t[:, :4096]) * t[:, 4096:]  # noqa: E731
    add("SwiGLU", "forward", lambda: k.cuda.gated_activation(x2, y2, "silu", s), lambda: swiglu(x2),
        "F.silu(a) * b", x2.numel() * 4 + y2.numel() * 4)  # fmt: skip
    add("SwiGLU", "backward", lambda: k.cuda.gated_activation_grad(dy2, x2, dx2, "silu", s),
        grad_of(lambda: swiglu(xs), xs := x2.clone()), "F.silu(a) * b backward", 2 * x2.numel() * 4 + y2.numel() * 4)

    x = torch.randn(8, 512, 16, 64, device="cuda")
    positions = torch.arange(512, device="cuda", dtype=torch.float32)[None]
    freq = torch.tensor(inv_freq(64, "float32"), device="cuda", dtype=torch.float32)
    y = torch.empty_like(x)
    angles = positions[0][:, None] * freq
    cos, sin = torch.cos(angles)[None, :, None], torch.sin(angles)[None, :, None]

    def torch_rope(t):
        a, b = t[..., :32], t[..., 32:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin], -1)

    table = torch.randn(1_000_000, 64, device="cuda")
    ids, splits = (torch.tensor(a, device="cuda") for a in bags_of([32] * 4096, 1_000_000, 7))
    bags, dbags = torch.empty(4096, 64, device="cuda"), torch.randn(4096, 64, device="cuda")
    rows_grad = torch.empty(ids.numel(), 64, device="cuda")
    nbytes = ids.numel() * 64 * 4 + bags.numel() * 4
    add("EmbeddingBag", "forward", lambda: k.cuda.embedding_bag(ids, splits, table, None, bags, "sum", s),
        lambda: F.embedding_bag(ids, table, splits[:-1], mode="sum"), "F.embedding_bag", nbytes)  # fmt: skip
    add("EmbeddingBag", "backward",
        lambda: k.cuda.embedding_bag_grad(ids, splits, table, None, dbags, rows_grad, None, "sum", s),
        grad_of(lambda: F.embedding_bag(ids, tq, splits[:-1], mode="sum", sparse=True), tq := table.clone()),
        "F.embedding_bag(sparse=True) backward", 2 * nbytes)  # fmt: skip

    nb = x.numel() * 4
    add("RoPE", "forward", lambda: k.cuda.rotary_embedding(x, positions, freq, y, False, s), lambda: torch_rope(x),
        "PyTorch RoPE composite", 2 * nb)  # fmt: skip
    add("RoPE", "backward", lambda: k.cuda.rotary_embedding_grad(x, positions, freq, y, False, s),
        grad_of(lambda: torch_rope(xq), xq := x.clone()), "PyTorch RoPE composite backward", 2 * nb)
    resampler_speed_rows(k, gpu, add, grad_of)
    deform_conv_speed_rows(k, gpu, add, grad_of)
    interaction_speed_rows(k, gpu, add, grad_of)
    return rows


def resampler_speed_rows(k, gpu, add, grad_of) -> None:
    """The resampler at `make bench`'s shape against F.grid_sample (bilinear,
    zero padding, align_corners: the same math on normalized coordinates)."""
    torch, F, s = gpu.torch, gpu.torch.nn.functional, gpu.stream
    data = torch.randn(16, 128, 128, 32, device="cuda")
    warp = torch.rand(16, 128, 128, 2, device="cuda") * 130 - 1
    out, grad = torch.empty_like(data), torch.randn_like(data)
    grad_data, grad_warp = torch.empty_like(data), torch.empty_like(warp)
    nchw, grid = data.permute(0, 3, 1, 2).contiguous(), warp / 127 * 2 - 1
    sample = lambda d, g: F.grid_sample(d, g, mode="bilinear", padding_mode="zeros", align_corners=True)  # noqa: E731
    nb = (data.numel() * 2 + warp.numel()) * 4
    add("resampler", "forward", lambda: k.cuda.resampler(data, warp, out, "zeros", s), lambda: sample(nchw, grid),
        "F.grid_sample", nb)  # fmt: skip
    for deterministic in (False, True):
        add("resampler", "backward (ordered)" if deterministic else "backward",
            lambda d=deterministic: k.cuda.resampler_grad(data, warp, grad, grad_data, grad_warp, "zeros", d, s),
            grad_of(lambda: sample(nd, ng), nd := nchw.clone(), ng := grid.clone()), "F.grid_sample backward",
            2 * nb)  # fmt: skip


def deform_conv_speed_rows(k, gpu, add, grad_of) -> None:
    """deform_conv2d at `make bench`'s shape against torchvision's
    deform_conv2d (NCHW) where torchvision is installed, else against the
    CPU kernels (NumPy arrays, float32)."""
    torch, s = gpu.torch, gpu.stream
    attrs = {"strides": [1, 1], "padding": "valid", "dilations": [1, 1], "groups": 1, "offset_groups": 1}
    x, kernel = torch.randn(8, 64, 64, 64, device="cuda"), torch.randn(3, 3, 64, 64, device="cuda") * 0.05
    offsets, mask = torch.randn(8, 62, 62, 18, device="cuda"), torch.rand(8, 62, 62, 9, device="cuda")
    out, grad = torch.empty(8, 62, 62, 64, device="cuda"), torch.randn(8, 62, 62, 64, device="cuda")
    grads = [torch.empty_like(t) for t in (x, offsets, mask, kernel)]
    nb = (x.numel() + offsets.numel() + mask.numel() + out.numel()) * 4
    ours = lambda: k.cuda.deform_conv2d(x, offsets, mask, kernel, out, **attrs, stream=s)  # noqa: E731
    ours_grad = lambda: k.cuda.deform_conv2d_grad(x, offsets, mask, kernel, grad, *grads, **attrs,  # noqa: E731
                                                  stream=s)
    try:
        from torchvision.ops import deform_conv2d as tv_deform
    except ImportError:
        host = [t.cpu().numpy() for t in (x, offsets, mask, kernel, grad)]
        add("deform_conv2d", "forward", ours, lambda: k.deform_conv2d(*host[:4], **attrs), "CPU kernels", nb)
        add("deform_conv2d", "backward", ours_grad, lambda: k.deform_conv2d_grad(*host, **attrs),
            "CPU kernels backward", 2 * nb)  # fmt: skip
        return
    nchw, weight = x.permute(0, 3, 1, 2).contiguous(), kernel.permute(3, 2, 0, 1).contiguous()
    offset_nchw, mask_nchw = offsets.permute(0, 3, 1, 2).contiguous(), mask.permute(0, 3, 1, 2).contiguous()
    theirs = lambda: tv_deform(nchw, offset_nchw, weight, mask=mask_nchw)  # noqa: E731
    add("deform_conv2d", "forward", ours, theirs, "torchvision deform_conv2d", nb)
    tv_grad = grad_of(lambda: tv_deform(tx, to, tw, mask=tm), tx := nchw.clone(), to := offset_nchw.clone(),
                      tw := weight.clone(), tm := mask_nchw.clone())
    add("deform_conv2d", "backward", ours_grad, tv_grad, "torchvision deform_conv2d backward", 2 * nb)


def interaction_speed_rows(k, gpu, add, grad_of) -> None:
    """DLRM's dot interaction at `make bench`'s shape against torch.bmm and
    a gather of the lower triangle."""
    torch, s = gpu.torch, gpu.stream
    batch, features, dim = 8192, 27, 128
    x = torch.randn(batch, features, dim, device="cuda")
    rows, cols = torch.tril_indices(features, features, -1, device="cuda")
    flat = rows * features + cols
    pairs = lambda t: torch.bmm(t, t.transpose(1, 2)).flatten(1)[:, flat]  # noqa: E731
    out, grad_x = torch.empty(batch, flat.numel(), device="cuda"), torch.empty_like(x)
    grad = torch.randn_like(out)
    nb = (x.numel() + out.numel()) * 4
    add("dot_interaction", "forward", lambda: k.cuda.dot_interaction(x, out, False, s), lambda: pairs(x),
        "torch.bmm + gather", nb)  # fmt: skip
    add("dot_interaction", "backward", lambda: k.cuda.dot_interaction_grad(x, grad, grad_x, False, s),
        grad_of(lambda: pairs(xi), xi := x.clone()), "torch.bmm + gather backward", 2 * nb)  # fmt: skip


def markdown(device: str, checks: list[dict], speed: list[dict]) -> str:
    failed = [c for c in checks if not c["passed"]]
    lines = [f"GPU check on {device}: {len(checks) - len(failed)} numerics cases passed, {len(failed)} failed.", ""]
    lines += [f"- FAILED {c['case']}: {', '.join(c.get('failures', [])) or c['worst']}" for c in failed]
    lines += ["", "| op | mode | tfkit ms | GB/s | % of copy | PyTorch | PyTorch ms | vs PyTorch |",
              "|---|---|---:|---:|---:|---|---:|---:|"]  # fmt: skip
    for r in speed:
        lines.append(f"| {r['op']} | {r['mode']} | {r['tfkit_ms']:.3f} | {r['gbps']:.0f} | {r['pct_of_copy']:.0f}% | "
                     f"{r['torch']} | {r['torch_ms']:.3f} | {r['vs_torch']:.2f}x |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", type=Path, required=True, help="the built tfkit_kernels extension")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "gpu_check")
    parser.add_argument("--dry-run", action="store_true", help="prepare the cases and CPU references only")
    args = parser.parse_args()
    k = load_module(args.module)
    started = time.perf_counter()
    cases = numerics_cases(k)
    if args.dry_run:
        print(f"dry run: {len(cases)} numerics cases prepared with their CPU references "
              f"in {time.perf_counter() - started:.1f} s; the CUDA launchers and speed need a GPU")  # fmt: skip
        return 0
    if not getattr(k, "has_cuda", False):
        print("tfkit_kernels was built without CUDA", file=sys.stderr)
        return 2
    try:
        gpu = Gpu()
    except ImportError:
        gpu = CupyGpu()
        cases = [c for c in cases if "bfloat16" not in c.name]
        print("PyTorch is not installed: CuPy arrays, no bfloat16 cases, no speed part", file=sys.stderr)
    checks = [check(case, gpu) for case in cases]
    speed, attention_speed = [], []
    if isinstance(gpu, Gpu):
        checks += many_rows_checks(k, gpu)
        speed = speed_rows(k, gpu)
        attention_speed = attention_speed_rows(k, gpu)
    device = gpu.name_of_device()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"device": device, "checks": checks, "speed": speed, "attention_speed": attention_speed}
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    table = markdown(device, checks, speed) + attention_markdown(attention_speed)
    (args.out / "gpu_check.md").write_text(table)
    print(table)
    print(f"took {time.perf_counter() - started:.0f} s")
    return 0 if all(c["passed"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
