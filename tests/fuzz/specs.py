"""The fuzz table: one row per raw op of tfkit's library, forward and grad ops.

A row (schema.Spec) says the op's sizes, its inputs and outputs (shape,
dtype, role), its attributes with the values it accepts and must refuse,
and its reference: the pure-TensorFlow implementation each tfkit op
declares (`Op.implementations["reference"]`, which takes the tensors the
compiled op takes), and for a grad op the vector-Jacobian product of that
reference under tf.GradientTape. A new family is covered by adding its rows
to SPECS; the strategies (cases.py) and the property (check.py) read
nothing else.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tests.fuzz.schema import FLOATS, Arg, Attr, Derived, Group, OneOf, Size, Spec, TypeAttr, Where
from tfkit.ops import activation, attention, deform_conv, embedding, interaction, norm, resampling, rotary

T = TypeAttr("T", FLOATS)
U = TypeAttr("U", (tf.float32, tf.float64))
U_ATTR = TypeAttr("U", (tf.float32, tf.float64), explicit=True)
TINDICES = TypeAttr("Tindices", (tf.int32, tf.int64))

BAD_NAMES = ("", "RELU", "swish", "gelu ", "relu\x00", "zeros\n", "no such name")
ACTIVATION = Attr("activation", valid=activation.ACTIVATIONS, invalid=BAD_NAMES)
COMBINER = Attr("combiner", valid=embedding.COMBINERS, invalid=("SUM", "max", "mean ", *BAD_NAMES))
BOUNDARY = Attr("boundary", valid=("zeros", "clamp"), invalid=("ZEROS", "wrap", "reflect", *BAD_NAMES))
INTERLEAVED = Attr("interleaved", valid=(False, True))
SMALLEST_NORMAL = float(np.finfo(np.float32).tiny)
EPSILON = Attr(
    "epsilon",
    valid=(1e-5, 1e-6, 1e-12, SMALLEST_NORMAL, 0.5, 1e3, 1e30, 3.4e38),
    # NaN, infinities, zero and negatives, float32 subnormals, a value that
    # rounds to 0 and one that rounds to inf as a float32.
    invalid=(float("nan"), float("inf"), -float("inf"), 0.0, -0.0, -1e-5, 1e-40, SMALLEST_NORMAL / 2, 1e-46, 1e39),
)

# The epsilon of the forward call a grad op's row statistics come from.
GRAD_EPSILON = 1e-5


def accumulates(types: dict) -> bool:
    """The kernels' type pairs: U is float64 for float64 T, else float32."""
    return types["U"] == (tf.float64 if types["T"] == tf.float64 else tf.float32)


def _reference(op):
    return op.implementations["reference"]


def vjp(fn, primals: list, cotangents: list) -> list:
    """The gradients of fn(*primals) with the given output cotangents."""
    with tf.GradientTape() as tape:
        tape.watch(primals)
        outputs = fn(*primals)
    return tape.gradient(outputs, primals, cotangents, unconnected_gradients=tf.UnconnectedGradients.ZERO)


def _float32(value: float) -> float:
    """A float attr as the op holds it."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


# The activation family -------------------------------------------------------


def _bias_activation(x, bias, activation_name):
    return _reference(activation.bias_activation)(x, bias, activation=activation_name)


def _gated_activation(x, activation_name):
    return _reference(activation.gated_activation)(x, activation=activation_name)


ACTIVATION_DIMS = {"b": Group(3, 4), "c": Size(6)}
GATED_DIMS = {"b": Group(3, 4), "c": Size(8, even=True), "h": Derived("c", lambda c: c // 2, lambda h: 2 * h)}

ACTIVATION_SPECS = [
    Spec(
        "Tfkit>BiasActivation",
        ACTIVATION_DIMS,
        inputs=(Arg("x", ("*b", "c"), "T"), Arg("bias", ("c",), "T")),
        outputs=(Arg("y", ("*b", "c"), "T"),),
        types=(T,),
        attrs=(ACTIVATION,),
        reference=lambda a, at: [_bias_activation(a["x"], a["bias"], at["activation"])],
    ),
    Spec(
        "Tfkit>BiasActivationGrad",
        ACTIVATION_DIMS,
        inputs=(Arg("dy", ("*b", "c"), "T", role="cotangent"), Arg("x", ("*b", "c"), "T"), Arg("bias", ("c",), "T")),
        outputs=(Arg("dx", ("*b", "c"), "T"), Arg("dbias", ("c",), "T")),
        types=(T,),
        attrs=(ACTIVATION,),
        reference=lambda a, at: vjp(
            lambda x, bias: _bias_activation(x, bias, at["activation"]), [a["x"], a["bias"]], [a["dy"]]
        ),
    ),
    Spec(
        "Tfkit>GatedActivation",
        GATED_DIMS,
        inputs=(Arg("x", ("*b", "c"), "T"),),
        outputs=(Arg("y", ("*b", "h"), "T"),),
        types=(T,),
        attrs=(ACTIVATION,),
        reference=lambda a, at: [_gated_activation(a["x"], at["activation"])],
    ),
    Spec(
        "Tfkit>GatedActivationGrad",
        GATED_DIMS,
        inputs=(Arg("dy", ("*b", "h"), "T", role="cotangent"), Arg("x", ("*b", "c"), "T")),
        outputs=(Arg("dx", ("*b", "c"), "T"),),
        types=(T,),
        attrs=(ACTIVATION,),
        reference=lambda a, at: vjp(lambda x: _gated_activation(x, at["activation"]), [a["x"]], [a["dy"]]),
    ),
]


# The embedding family --------------------------------------------------------

EMBEDDING_DIMS = {
    "vocab": Size(6),
    "dim": Size(5),
    "bags": Size(4),
    "splits": Derived("bags", lambda bags: bags + 1, lambda splits: splits - 1),
    # An id needs a row to look up and a bag to be in.
    "n": Size(8, zero_unless=("vocab", "bags")),
    # weights: one per id, or [0] for none.
    "wn": OneOf(("n",), lambda n: (n, 0)),
}
IDS = Arg("ids", ("n",), "Tindices", role="ids", aliases=("indices",))
ROW_SPLITS = Arg("row_splits", ("splits",), "int64", role="splits")
WEIGHTS = Arg("weights", ("wn",), "T")
DY_BAGS = Arg("dy", ("bags", "dim"), "T", role="cotangent")
EMBEDDING_GRAD_OUTPUTS = (Arg("d_values", ("n", "dim"), "T"), Arg("d_weights", ("wn",), "T"))


def _embedding_bag(ids, row_splits, params, weights, combiner):
    batch_shape = tf.shape(row_splits, out_type=tf.int64)[:1] - 1
    weighted = weights.shape[0] > 0
    return _reference(embedding.embedding_bag)(
        ids, row_splits, params, weights, batch_shape, combiner=combiner, weighted=weighted, static_batch_shape=None
    )


def _embedding_bag_forward(a, at):
    params = tf.convert_to_tensor(a["params"])  # a variable's value for the resource ops
    return [_embedding_bag(a["ids"], a["row_splits"], params, a["weights"], at["combiner"])]


def _embedding_bag_grad(a, at):
    """d_values: the table's gradient rows, one per id (the values of the
    IndexedSlices tf.gather's gradient is), and the weights' gradient."""
    params = tf.convert_to_tensor(a["params"])
    d_params, d_weights = vjp(
        lambda p, w: _embedding_bag(a["ids"], a["row_splits"], p, w, at["combiner"]),
        [params, a["weights"]],
        [a["dy"]],
    )
    if not isinstance(d_params, tf.IndexedSlices):  # no path from the table: no id
        d_params = tf.IndexedSlices(tf.zeros([0, params.shape[1]], params.dtype), tf.zeros([0], tf.int64))
    return [d_params.values, d_weights]


def _embedding_specs(prefix: str, table: Arg) -> list[Spec]:
    return [
        Spec(
            f"Tfkit>{prefix}EmbeddingBag",
            EMBEDDING_DIMS,
            inputs=(IDS, ROW_SPLITS, table, WEIGHTS),
            outputs=(Arg("y", ("bags", "dim"), "T"),),
            types=(T, TINDICES),
            attrs=(COMBINER,),
            reference=_embedding_bag_forward,
        ),
        Spec(
            f"Tfkit>{prefix}EmbeddingBagGrad",
            EMBEDDING_DIMS,
            inputs=(IDS, ROW_SPLITS, table, WEIGHTS, DY_BAGS),
            outputs=EMBEDDING_GRAD_OUTPUTS,
            types=(T, TINDICES),
            attrs=(COMBINER,),
            reference=_embedding_bag_grad,
        ),
    ]


EMBEDDING_SPECS = [
    *_embedding_specs("", Arg("params", ("vocab", "dim"), "T")),
    *_embedding_specs("Resource", Arg("params", ("vocab", "dim"), "T", role="handle")),
]


# The norm family -------------------------------------------------------------


def layer_norm_stats(x, epsilon: float, dtype: tf.DType):
    """Each row's mean and 1 / sqrt(variance + epsilon), in `dtype`."""
    xf = tf.cast(x, dtype)
    mean = tf.reduce_mean(xf, axis=-1)
    variance = tf.reduce_mean(tf.square(xf - mean[..., tf.newaxis]), axis=-1)
    return mean, tf.math.rsqrt(variance + epsilon)


def rms_norm_rstd(x, epsilon: float, dtype: tf.DType):
    """Each row's 1 / sqrt(mean square + epsilon), in `dtype`."""
    return tf.math.rsqrt(tf.reduce_mean(tf.square(tf.cast(x, dtype)), axis=-1) + epsilon)


# The row statistics a grad op takes from its forward ("stat:NAME" inputs).
STATS = {
    "mean": lambda x, dtype: layer_norm_stats(x, GRAD_EPSILON, dtype)[0],
    "rstd": lambda x, dtype: layer_norm_stats(x, GRAD_EPSILON, dtype)[1],
    "rms_rstd": lambda x, dtype: rms_norm_rstd(x, GRAD_EPSILON, dtype),
}


def _layer_norm(x, gamma, beta, epsilon, dtype):
    y = _reference(norm.layer_norm)(x, gamma, beta, epsilon=epsilon)
    return (y, *layer_norm_stats(x, epsilon, dtype))


def _rms_norm(x, gamma, epsilon, dtype):
    return _reference(norm.rms_norm)(x, gamma, epsilon=epsilon), rms_norm_rstd(x, epsilon, dtype)


def _stats_defined(outputs: list, x) -> list:
    """y, and the row statistics where they are defined: a row of no
    features has none, and one holding an infinity or NaN has none the
    kernels must agree on (y is NaN there either way)."""
    finite = tf.reduce_all(tf.math.is_finite(x), axis=-1) & (tf.shape(x)[-1] > 0)
    return [outputs[0], *(Where(stat, finite) for stat in outputs[1:])]


NORM_DIMS = {"b": Group(3, 4), "c": Size(8)}
X = Arg("x", ("*b", "c"), "T")
DY = Arg("dy", ("*b", "c"), "T", role="cotangent")
GAMMA = Arg("gamma", ("c",), "T")
ROW_STAT = ("*b",)

NORM_SPECS = [
    Spec(
        "Tfkit>LayerNorm",
        NORM_DIMS,
        inputs=(X, GAMMA, Arg("beta", ("c",), "T")),
        outputs=(Arg("y", X.shape, "T"), Arg("mean", ROW_STAT, "U"), Arg("rstd", ROW_STAT, "U")),
        types=(T, U_ATTR),
        type_rule=accumulates,
        attrs=(EPSILON,),
        reference=lambda a, at: _stats_defined(
            list(_layer_norm(a["x"], a["gamma"], a["beta"], _float32(at["epsilon"]), at["U"])), a["x"]
        ),
    ),
    Spec(
        "Tfkit>LayerNormGrad",
        NORM_DIMS,
        inputs=(
            DY,
            X,
            GAMMA,
            Arg("mean", ROW_STAT, "U", role="stat:mean"),
            Arg("rstd", ROW_STAT, "U", role="stat:rstd"),
            Arg("dmean", ROW_STAT, "U", role="cotangent"),
            Arg("drstd", ROW_STAT, "U", role="cotangent"),
        ),
        outputs=(Arg("dx", X.shape, "T"), Arg("dgamma", ("c",), "T"), Arg("dbeta", ("c",), "T")),
        types=(T, U),
        type_rule=accumulates,
        reference=lambda a, at: vjp(
            lambda x, gamma, beta: _layer_norm(x, gamma, beta, GRAD_EPSILON, at["U"]),
            [a["x"], a["gamma"], tf.zeros_like(a["gamma"])],
            [a["dy"], a["dmean"], a["drstd"]],
        ),
    ),
    Spec(
        "Tfkit>RMSNorm",
        NORM_DIMS,
        inputs=(X, GAMMA),
        outputs=(Arg("y", X.shape, "T"), Arg("rstd", ROW_STAT, "U")),
        types=(T, U_ATTR),
        type_rule=accumulates,
        attrs=(EPSILON,),
        reference=lambda a, at: _stats_defined(
            list(_rms_norm(a["x"], a["gamma"], _float32(at["epsilon"]), at["U"])), a["x"]
        ),
    ),
    Spec(
        "Tfkit>RMSNormGrad",
        NORM_DIMS,
        inputs=(
            DY,
            X,
            GAMMA,
            Arg("rstd", ROW_STAT, "U", role="stat:rms_rstd"),
            Arg("drstd", ROW_STAT, "U", role="cotangent"),
        ),
        outputs=(Arg("dx", X.shape, "T"), Arg("dgamma", ("c",), "T")),
        types=(T, U),
        type_rule=accumulates,
        reference=lambda a, at: vjp(
            lambda x, gamma: _rms_norm(x, gamma, GRAD_EPSILON, at["U"]), [a["x"], a["gamma"]], [a["dy"], a["drstd"]]
        ),
    ),
]


# The resampling family -------------------------------------------------------


def _resample(data, warp, boundary):
    return _reference(resampling.resampler)(data, warp, boundary=boundary)


RESAMPLING_DIMS = {"batch": Size(3), "height": Size(4), "width": Size(4), "channels": Size(3), "points": Group(2, 4)}
DATA = Arg("data", ("batch", "height", "width", "channels"), "T")
WARP = Arg("warp", ("batch", "*points", 2), "T", role="coords")
SAMPLES = ("batch", "*points", "channels")

RESAMPLING_SPECS = [
    Spec(
        "Tfkit>Resampler",
        RESAMPLING_DIMS,
        inputs=(DATA, WARP),
        outputs=(Arg("output", SAMPLES, "T"),),
        types=(T,),
        attrs=(BOUNDARY,),
        reference=lambda a, at: [_resample(a["data"], a["warp"], at["boundary"])],
    ),
    Spec(
        "Tfkit>ResamplerGrad",
        RESAMPLING_DIMS,
        inputs=(DATA, WARP, Arg("grad_output", SAMPLES, "T", role="cotangent")),
        outputs=(Arg("grad_data", DATA.shape, "T"), Arg("grad_warp", WARP.shape, "T")),
        types=(T,),
        attrs=(BOUNDARY,),
        reference=lambda a, at: vjp(
            lambda data, warp: _resample(data, warp, at["boundary"]), [a["data"], a["warp"]], [a["grad_output"]]
        ),
    ),
]


# The deformable convolution family --------------------------------------------
# A 3 x 1 kernel, stride 1 and "same" padding: the output has x's pixels.
# The offsets' and the mask's last sizes follow from the kernel's height,
# so a kernel of another height disagrees with them too (either may be named).

DEFORM_ATTRS = (
    Attr("strides", valid=([1, 1],), invalid=([0, 1], [1], [1, 1, 1], [-1, 1])),
    Attr("dilations", valid=([1, 1],), invalid=([1, 0], [2], [-3, 1])),
    Attr("padding", valid=("same",), invalid=("SAME", "full", *BAD_NAMES)),
    Attr("groups", valid=(1,), invalid=(0, -1)),
    Attr("offset_groups", valid=(1,), invalid=(0, -2)),
)
DEFORM_DIMS = {
    "batch": Size(2),
    "height": Size(4),
    "width": Size(4),
    "channels": Size(3),
    "filters": Size(3),
    "kernel_height": OneOf((), lambda: (3,)),
    "offset_channels": Derived("kernel_height", lambda taps: 2 * taps, lambda n: n // 2 if n % 2 == 0 else None),
    "mask_channels": Derived("kernel_height", lambda taps: taps, lambda n: n),
}
DEFORM_INPUTS = (
    Arg("x", ("batch", "height", "width", "channels"), "T"),
    Arg("offsets", ("batch", "height", "width", "offset_channels"), "T"),
    Arg("mask", ("batch", "height", "width", "mask_channels"), "T"),
    Arg("kernel", ("kernel_height", 1, "channels", "filters"), "T"),
)
DEFORM_OUTPUT = ("batch", "height", "width", "filters")


def _deform(x, offsets, mask, kernel, attrs):
    op_attrs = {attr.name: attrs[attr.name] for attr in DEFORM_ATTRS}
    return _reference(deform_conv.deform_conv2d)(x, offsets, mask, kernel, **op_attrs)


def _deform_grads(a: dict, attrs: dict) -> list:
    """The gradients; those of the offsets and the mask are defined where the
    pixel's output gradient and mask are finite (a tap sampling outside the
    image has zero gradient in the kernels, 0 * NaN in the reference)."""
    primals = [a[n] for n in ("x", "offsets", "mask", "kernel")]
    grads = vjp(lambda *inputs: _deform(*inputs, attrs), primals, [a["grad_output"]])
    finite = tf.reduce_all(tf.math.is_finite(a["grad_output"]), -1) & tf.reduce_all(tf.math.is_finite(a["mask"]), -1)
    return [grads[0], *(Where(g, finite[..., None] & tf.ones_like(g, tf.bool)) for g in grads[1:3]), grads[3]]


DEFORM_CONV_SPECS = [
    Spec(
        "Tfkit>DeformConv2D",
        DEFORM_DIMS,
        inputs=DEFORM_INPUTS,
        outputs=(Arg("output", DEFORM_OUTPUT, "T"),),
        types=(T,),
        attrs=DEFORM_ATTRS,
        reference=lambda a, at: [_deform(a["x"], a["offsets"], a["mask"], a["kernel"], at)],
    ),
    Spec(
        "Tfkit>DeformConv2DGrad",
        DEFORM_DIMS,
        inputs=(*DEFORM_INPUTS, Arg("grad_output", DEFORM_OUTPUT, "T", role="cotangent")),
        outputs=tuple(Arg(f"grad_{arg.name}", arg.shape, "T") for arg in DEFORM_INPUTS),
        types=(T,),
        attrs=DEFORM_ATTRS,
        reference=_deform_grads,
    ),
]


# The rotary family -----------------------------------------------------------


def _rotate(x, positions, inv_freq, interleaved):
    return _reference(rotary.rotary_embedding)(
        x, positions, inv_freq, sequence_axis=1, feature_axis=x.shape.rank - 1, interleaved=interleaved
    )


ROTARY_DIMS = {
    "batch": Size(3),
    "seq": Size(5),
    "heads": Group(2, 3),
    "dim": Size(8, even=True),
    "half": Derived("dim", lambda dim: dim // 2, lambda half: 2 * half),
    # positions: one row for every batch row, or one per batch row.
    "rows": OneOf(("batch",), lambda batch: (1, batch)),
}
POSITIONS = Arg("positions", ("rows", "seq"), "U", role="positions")
INV_FREQ = Arg("inv_freq", ("half",), "U")
ROTATED = ("batch", "seq", "*heads", "dim")

ROTARY_SPECS = [
    Spec(
        "Tfkit>RotaryEmbedding",
        ROTARY_DIMS,
        inputs=(Arg("x", ROTATED, "T"), POSITIONS, INV_FREQ),
        outputs=(Arg("y", ROTATED, "T"),),
        types=(T, U),
        type_rule=accumulates,
        attrs=(INTERLEAVED,),
        reference=lambda a, at: [_rotate(a["x"], a["positions"], a["inv_freq"], at["interleaved"])],
    ),
    Spec(
        "Tfkit>RotaryEmbeddingGrad",
        ROTARY_DIMS,
        inputs=(Arg("dy", ROTATED, "T", role="cotangent"), POSITIONS, INV_FREQ),
        outputs=(Arg("dx", ROTATED, "T"),),
        types=(T, U),
        type_rule=accumulates,
        attrs=(INTERLEAVED,),
        # The rotation is linear: its vector-Jacobian product at any x.
        reference=lambda a, at: vjp(
            lambda x: _rotate(x, a["positions"], a["inv_freq"], at["interleaved"]),
            [tf.zeros_like(a["dy"])],
            [a["dy"]],
        ),
    ),
]


# The interaction family ------------------------------------------------------


def _interact(features, self_interaction):
    return _reference(interaction.dot_interaction)(features, self_interaction=self_interaction)


def _pair_count(self_interaction: bool):
    """pairs from the feature count, and the feature count a pair count implies."""
    extra = 1 if self_interaction else -1

    def forward(f: int) -> int:
        return f * (f + extra) // 2

    def inverse(pairs: int) -> int | None:
        f = max(int(np.sqrt(2 * pairs)) - 2, 0)
        while forward(f) < pairs:
            f += 1
        return f if forward(f) == pairs else None

    return forward, inverse


def _interaction_specs(self_interaction: bool) -> list:
    """The two ops with self_interaction fixed (the pair count follows from it)."""
    dims = {
        "batch": Size(3),
        "features": Size(6),
        "dim": Size(5),
        "pairs": Derived("features", *_pair_count(self_interaction)),
    }
    features = Arg("features", ("batch", "features", "dim"), "T")
    attrs = (Attr("self_interaction", valid=(self_interaction,)),)
    return [
        Spec(
            "Tfkit>DotInteraction",
            dims,
            inputs=(features,),
            outputs=(Arg("output", ("batch", "pairs"), "T"),),
            types=(T,),
            attrs=attrs,
            reference=lambda a, at: [_interact(a["features"], at["self_interaction"])],
        ),
        Spec(
            "Tfkit>DotInteractionGrad",
            dims,
            inputs=(features, Arg("grad_output", ("batch", "pairs"), "T", role="cotangent")),
            outputs=(Arg("grad_features", features.shape, "T"),),
            types=(T,),
            attrs=attrs,
            reference=lambda a, at: vjp(
                lambda x: _interact(x, at["self_interaction"]), [a["features"]], [a["grad_output"]]
            ),
        ),
    ]


INTERACTION_SPECS = [*_interaction_specs(False), *_interaction_specs(True)]


# The attention family --------------------------------------------------------


def _attention_attrs(at: dict) -> dict:
    """The reference's attributes from the raw op's (scale rounded to float32)."""
    scale = None if at["default_scale"] else _float32(at["scale"])
    return {"scale": scale, "is_causal": at["is_causal"], "dropout_rate": _float32(at["dropout_rate"])}


def _attention(a: dict, at: dict) -> list:
    """The forward's output, and each row's log-sum-exp of its logits."""
    kwargs = _attention_attrs(at)
    output = _reference(attention.dot_product_attention)(
        a["query"], a["key"], a["value"], a["bias"], a["mask"], a["seed"], **kwargs
    )
    logits = attention.masked_logits(
        a["query"], a["key"], a["bias"], a["mask"], scale=kwargs["scale"], is_causal=at["is_causal"]
    )
    return [output, tf.cast(tf.reduce_logsumexp(logits, axis=-1), at["U"])]


def _either(size: str):
    """A bias or mask size: 1, or the logits' size."""
    return OneOf((size,), lambda n: (1, n))


ATTENTION_DIMS = {
    "batch": Size(3),
    "target": Size(4),
    "source": Size(5),
    "kv_heads": Size(2),
    # Query heads: one or two per key head (2 * kv_heads where that is a size).
    "heads": OneOf(("kv_heads",), lambda k: (k, 2 * k) if 2 * k < 2**63 else (k,)),
    "head_dim": Size(6),
    **{f"bias_{n}": _either(n) for n in ("batch", "heads", "target", "source")},
    **{f"mask_{n}": _either(n) for n in ("batch", "heads", "target", "source")},
}
QUERY = Arg("query", ("batch", "target", "heads", "head_dim"), "T")
KEY = ("batch", "source", "kv_heads", "head_dim")
ATTENTION_INPUTS = (
    QUERY,
    Arg("key", KEY, "T"),
    Arg("value", KEY, "T"),
    Arg("bias", ("bias_batch", "bias_heads", "bias_target", "bias_source"), "T"),
    Arg("mask", ("mask_batch", "mask_heads", "mask_target", "mask_source"), "bool"),
    Arg("seed", (2,), "int64"),
)
LSE = Arg("lse", ("batch", "heads", "target"), "U")
ATTENTION_ATTRS = (
    Attr("scale", valid=(1.0, 0.35, -2.0, 0.0), invalid=(float("nan"), float("inf"), -float("inf"), 1e39)),
    Attr("default_scale", valid=(False, True)),
    Attr("is_causal", valid=(False, True)),
    Attr("dropout_rate", valid=(0.0, 0.25, 0.9), invalid=(1.0, -0.1, 1.5, float("nan"), float("inf"))),
    # The public op passes an empty placeholder for a bias or mask it is
    # not given; the table fuzzes the ops with both.
    Attr("has_bias", valid=(True,)),
    Attr("has_mask", valid=(True,)),
)

ATTENTION_SPECS = [
    Spec(
        "Tfkit>DotProductAttention",
        ATTENTION_DIMS,
        inputs=ATTENTION_INPUTS,
        outputs=(Arg("output", QUERY.shape, "T"), LSE),
        types=(T, U_ATTR),
        type_rule=accumulates,
        attrs=ATTENTION_ATTRS,
        reference=_attention,
    ),
    Spec(
        "Tfkit>DotProductAttentionGrad",
        ATTENTION_DIMS,
        inputs=(
            Arg("dout", QUERY.shape, "T", role="cotangent"),
            *ATTENTION_INPUTS,
            Arg("output", QUERY.shape, "T"),
            LSE,
        ),
        outputs=(
            Arg("dquery", QUERY.shape, "T"),
            Arg("dkey", KEY, "T"),
            Arg("dvalue", KEY, "T"),
            Arg("dbias", ("bias_batch", "bias_heads", "bias_target", "bias_source"), "T"),
        ),
        types=(T, U),
        type_rule=accumulates,
        attrs=ATTENTION_ATTRS,
        # Given any output and lse (the table has no forward to take them
        # from), the gradients' values are not the reference's: only their
        # shapes and dtypes are checked, and the refusals (tests/ops/
        # test_attention.py checks the values).
        reference=lambda a, at: [None, None, None, None],
    ),
]


SPECS: list[Spec] = [
    *ACTIVATION_SPECS,
    *ATTENTION_SPECS,
    *EMBEDDING_SPECS,
    *INTERACTION_SPECS,
    *NORM_SPECS,
    *DEFORM_CONV_SPECS,
    *RESAMPLING_SPECS,
    *ROTARY_SPECS,
]
