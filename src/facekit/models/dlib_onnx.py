"""dlib's ResNet face descriptor, converted once to ONNX and run with ONNX Runtime.

The dlib-bin wheel has no BLAS: ``face_recognition_model_v1.compute_face_descriptor`` costs
~75-80 ms per 150x150 chip and batching does not help. This module reads the *same* network
with the *same* weights from ``dlib_face_recognition_resnet_model_v1.dat`` (dlib's binary
serialisation of ``anet_type`` from dlib's ``examples/dnn_face_recognition_ex.cpp``), writes
an equivalent ONNX graph once, and runs it with ONNX Runtime.

Network (forward order)::

    input_rgb_image_sized<150>          (x - mean_rgb) / 256, channels R, G, B
    con<32,7,7,2,2> affine relu max_pool<3,3,2,2>
    3 x ares<32>                        relu(x + affine(con(relu(affine(con(x))))))
    ares_down<64>  + 3 x ares<64>       ares_down: shortcut = avg_pool<2,2,2,2>(x),
    ares_down<128> + 2 x ares<128>                 first con has stride 2
    ares_down<256> + 2 x ares<256>
    ares_down<256>
    avg_pool_everything fc_no_bias<128>

dlib conventions that matter (all read from the file, not assumed):

* ``con_`` / pooling padding is stored per layer (0 for every strided layer of this net);
* ``affine_`` is a per-channel ``gamma * x + beta`` (batch norm folded at training time); it
  is folded into the preceding convolution here;
* ``add_prev_`` adds two tensors of different shapes by zero-padding the smaller one at the end
  of each dimension (channels *and* rows/columns: 3x3 + 4x4 -> 4x4 at the 8 -> 4 step);
* ``fc_`` weights are stored as (num_inputs, num_outputs): ``y = x @ W``.

Embeddings are raw (not L2-normalised), exactly like dlib's. The ``onnx`` package is needed only
for the one-time conversion (:func:`build_onnx`); running the cached model needs only
onnxruntime.

Example:
    >>> path = ensure_dlib_onnx(dat_path)  # doctest: +SKIP
    >>> DlibOnnxResnet(path).embed_chips(chips).shape  # doctest: +SKIP
    (4, 128)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CONVERTER_VERSION",
    "DlibOnnxResnet",
    "ONNX_NAME",
    "build_onnx",
    "ensure_dlib_onnx",
    "parse_dlib_resnet",
]

#: Bump when the converter's output changes: cached ONNX files with another version are rebuilt.
CONVERTER_VERSION = 1
ONNX_NAME = "dlib_face_recognition_resnet_model_v1.onnx"
CHIP_SIZE = 150

# dlib's float_details encodes these exponents for non-finite values (dlib/float_details.h).
_EXP_INF, _EXP_NINF, _EXP_NAN = 32000, 32001, 32002


# --------------------------------------------------------------------------------------------
# Reading dlib's serialisation format (dlib/serialize.h, dlib/dnn/tensor.h)
# --------------------------------------------------------------------------------------------


class DlibFormatError(ValueError):
    """The file is not the dlib ResNet face descriptor this converter understands."""


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of file at byte {self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def read_int(self) -> int:
        """dlib's portable integer: a control byte (size in the low nibble, 0x80 = negative)
        followed by that many little-endian bytes."""
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if size > 8:
            raise DlibFormatError(f"bad integer control byte {ctrl:#x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little") if size else 0
        return -value if ctrl & 0x80 else value

    def read_float(self) -> float:
        """dlib's portable float: int64 mantissa and int16 exponent (value = m * 2**e)."""
        mantissa, exponent = self.read_int(), self.read_int()
        if exponent == _EXP_INF:
            return float("inf")
        if exponent == _EXP_NINF:
            return float("-inf")
        if exponent == _EXP_NAN:
            return float("nan")
        return float(np.ldexp(float(mantissa), exponent))

    def read_bool(self) -> bool:
        ch = self._take(1)
        if ch not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {ch!r} at byte {self.pos - 1}")
        return ch == b"1"

    def read_string(self) -> str:
        n = self.read_int()
        return self._take(n).decode("latin-1")

    def peek_string(self) -> str | None:
        """The string at the current position if it looks like a layer name, else None."""
        pos = self.pos
        try:
            n = self.read_int()
            if not 0 < n <= 64:
                return None
            raw = self._take(n)
            text = raw.decode("ascii")
            return text if text.replace("_", "a").isalnum() else None
        except (DlibFormatError, UnicodeDecodeError):
            return None
        finally:
            self.pos = pos

    def read_tensor(self) -> np.ndarray:
        """A ``resizable_tensor``: version, num_samples, k, nr, nc, then the values."""
        version = self.read_int()
        shape = tuple(self.read_int() for _ in range(4))
        count = int(np.prod(shape))
        if version == 2:  # 4-byte little-endian IEEE floats
            values = np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)
        elif version == 1:  # dlib's portable floats, one by one
            values = np.array([self.read_float() for _ in range(count)], np.float32)
        else:
            raise DlibFormatError(f"unknown tensor version {version} at byte {self.pos}")
        return values.reshape(shape)

    def read_alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.read_int()
        if version != 1:
            raise DlibFormatError(f"unknown alias_tensor version {version}")
        return tuple(self.read_int() for _ in range(4))  # type: ignore[return-value]


@dataclass
class Layer:
    """One computational layer of the network, in forward order.

    ``kind`` is one of ``con``, ``affine``, ``relu``, ``max_pool``, ``avg_pool``, ``add_prev``,
    ``fc``. ``params`` holds numpy arrays (``weight``/``bias`` for con, ``gamma``/``beta`` for
    affine, ``weight`` (in, out) for fc); ``attrs`` holds sizes, strides and paddings.
    """

    kind: str
    params: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DlibResnet:
    """Parsed network: input normalisation and the computational layers in forward order."""

    mean_rgb: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: list[Layer]
    loss: dict[str, float]


def _layer_details(r: _Reader, name: str) -> Layer:
    if name == "con_4":  # dlib/dnn/layers.h con_::serialize
        params = r.read_tensor().reshape(-1)
        nf, nr, nc, sy, sx, py, px = (r.read_int() for _ in range(7))
        fshape = r.read_alias_tensor()
        bshape = r.read_alias_tensor()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.read_float()
        nw = int(np.prod(fshape))
        weight: np.ndarray = params[:nw].reshape(fshape)
        bias = params[nw : nw + int(np.prod(bshape))]
        if weight.shape[0] != nf or weight.shape[2:] != (nr, nc) or bias.size != nf:
            raise DlibFormatError(f"inconsistent con_ layer: {fshape} {bshape} nf={nf}")
        return Layer(
            "con",
            {"weight": weight, "bias": bias},
            {"stride": (sy, sx), "pad": (py, px), "kernel": (nr, nc)},
        )
    if name == "affine_":
        params = r.read_tensor().reshape(-1)
        gshape = r.read_alias_tensor()
        r.read_alias_tensor()
        mode = r.read_int()
        k = int(np.prod(gshape))
        return Layer("affine", {"gamma": params[:k], "beta": params[k : 2 * k]}, {"mode": mode})
    if name == "relu_":
        return Layer("relu")
    if name in ("max_pool_2", "avg_pool_2"):
        nr, nc, sy, sx, py, px = (r.read_int() for _ in range(6))
        return Layer(name[:-2], attrs={"kernel": (nr, nc), "stride": (sy, sx), "pad": (py, px)})
    if name == "add_prev_":
        return Layer("add_prev")
    if name == "fc_2":
        n_out, n_in = r.read_int(), r.read_int()
        params = r.read_tensor().reshape(-1)
        wshape = r.read_alias_tensor()
        bshape = r.read_alias_tensor()
        bias_mode = r.read_int()
        for _ in range(4):
            r.read_float()
        nw = int(np.prod(wshape))
        fc_weight: np.ndarray = params[:nw].reshape(n_in, n_out)
        out: dict[str, np.ndarray] = {"weight": fc_weight}
        if bias_mode == 0 and np.prod(bshape):  # FC_HAS_BIAS
            out["bias"] = params[nw : nw + n_out]
        return Layer("fc", out, {"n_in": n_in, "n_out": n_out})
    raise DlibFormatError(f"unsupported dlib layer {name!r}")


def parse_dlib_resnet(path: str | os.PathLike[str]) -> DlibResnet:
    """Parse dlib's ``dlib_face_recognition_resnet_model_v1.dat`` into numpy weights.

    The file is ``serialize(net)`` of an ``add_loss_layer``: the loss layer's details, then the
    version numbers of every nested layer (outermost first), then the input layer, then each
    computational layer's details followed by its bookkeeping (three bools, three empty
    tensors). Tag and skip layers write only a version number; the graph topology they encode is
    rebuilt from the fixed ``anet_type`` template in :func:`build_onnx`.
    """
    r = _Reader(Path(path).read_bytes())
    if r.read_int() != 1 or r.read_string() != "loss_metric_2":
        raise DlibFormatError(f"{path} is not a dlib loss_metric network")
    loss = {"margin": r.read_float(), "distance_threshold": r.read_float()}
    # Version numbers of the nested add_layer / add_tag_layer / add_skip_layer wrappers.
    while r.peek_string() != "input_rgb_image_sized":
        if r.read_int() not in (1, 2, 3):
            raise DlibFormatError(f"unexpected layer version at byte {r.pos}")
    r.read_string()
    mean_rgb = (r.read_float(), r.read_float(), r.read_float())
    input_size = (r.read_int(), r.read_int())
    layers: list[Layer] = []
    while r.pos < len(r.data):
        name = r.read_string()
        layers.append(_layer_details(r, name))
        # add_layer bookkeeping: setup_called, gradient_input_is_stale, output_disabled,
        # then x_grad, cached_output, params_grad (empty in a saved model).
        for _ in range(3):
            r.read_bool()
        for _ in range(3):
            r.read_tensor()
        if len(layers) == 1:  # the add_layer next to the input also writes its expansion factor
            r.read_int()
    return DlibResnet(mean_rgb, input_size, layers, loss)


# --------------------------------------------------------------------------------------------
# Building the ONNX graph
# --------------------------------------------------------------------------------------------


def _fold(con: Layer, aff: Layer) -> tuple[np.ndarray, np.ndarray]:
    g, b = aff.params["gamma"], aff.params["beta"]
    w = con.params["weight"] * g[:, None, None, None]
    bias = con.params["bias"] * g + b
    return w.astype(np.float32), bias.astype(np.float32)


def _out_size(n: int, k: int, s: int, p: int) -> int:
    return 1 + (n + 2 * p - k) // s


def build_onnx(net: DlibResnet) -> bytes:
    """Serialise ``net`` as an ONNX model (opset 13).

    Input ``chips``: (n, 150, 150, 3) uint8 RGB; output ``descriptors``: (n, 128) float32.
    Each ``con`` is fused with the ``affine`` that follows it. Needs the ``onnx`` package.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    inits: list[Any] = []
    counter = [0]

    def name(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def const(prefix: str, arr: np.ndarray) -> str:
        n = name(prefix)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), n))
        return n

    def op(kind: str, inputs: list[str], **attrs: Any) -> str:
        out = name(kind.lower())
        nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out

    layers = list(net.layers)
    pos = 0

    def take(kind: str) -> Layer:
        nonlocal pos
        if pos >= len(layers) or layers[pos].kind != kind:
            got = layers[pos].kind if pos < len(layers) else "end"
            raise DlibFormatError(f"layer {pos}: expected {kind}, found {got}")
        pos += 1
        return layers[pos - 1]

    def peek() -> str | None:
        return layers[pos].kind if pos < len(layers) else None

    # Tensors carry (name, channels, height, width) so that add_prev can zero-pad statically.
    def conv_affine(x: tuple[str, int, int, int]) -> tuple[str, int, int, int]:
        con = take("con")
        aff = take("affine")
        w, b = _fold(con, aff)
        (sy, sx), (py, px), (kh, kw) = con.attrs["stride"], con.attrs["pad"], con.attrs["kernel"]
        out = op(
            "Conv",
            [x[0], const("w", w), const("b", b)],
            kernel_shape=[kh, kw],
            strides=[sy, sx],
            pads=[py, px, py, px],
        )
        return out, w.shape[0], _out_size(x[2], kh, sy, py), _out_size(x[3], kw, sx, px)

    def relu(x: tuple[str, int, int, int]) -> tuple[str, int, int, int]:
        take("relu")
        return (op("Relu", [x[0]]), *x[1:])

    def pool(x: tuple[str, int, int, int], kind: str) -> tuple[str, int, int, int]:
        lay = take(kind)
        (kh, kw), (sy, sx), (py, px) = lay.attrs["kernel"], lay.attrs["stride"], lay.attrs["pad"]
        onnx_op = "MaxPool" if kind == "max_pool" else "AveragePool"
        extra = {} if kind == "max_pool" else {"count_include_pad": 1}
        if kind == "avg_pool" and (py or px):
            raise DlibFormatError("padded avg_pool is not supported")
        out = op(
            onnx_op,
            [x[0]],
            kernel_shape=[kh, kw],
            strides=[sy, sx],
            pads=[py, px, py, px],
            **extra,
        )
        return out, x[1], _out_size(x[2], kh, sy, py), _out_size(x[3], kw, sx, px)

    def pad_to(x: tuple[str, int, int, int], c: int, h: int, w: int) -> str:
        if (x[1], x[2], x[3]) == (c, h, w):
            return x[0]
        pads = np.array([0, 0, 0, 0, 0, c - x[1], h - x[2], w - x[3]], np.int64)
        return op("Pad", [x[0], const("pads", pads)], mode="constant")

    def add_prev(a: tuple[str, int, int, int], b: tuple[str, int, int, int]):
        take("add_prev")
        c, h, w = max(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])
        return op("Add", [pad_to(a, c, h, w), pad_to(b, c, h, w)]), c, h, w

    # Input: uint8 NHWC RGB -> float NCHW, (x - mean) / 256 like input_rgb_image_sized.
    nr, nc = net.input_size
    x_name = "chips"
    f = op("Cast", [x_name], to=TensorProto.FLOAT)
    mean = np.array(net.mean_rgb, np.float32).reshape(1, 1, 1, 3)
    f = op("Sub", [f, const("mean", mean)])
    f = op("Mul", [f, const("scale", np.array(1.0 / 256.0, np.float32))])
    x: tuple[str, int, int, int] = (op("Transpose", [f], perm=[0, 3, 1, 2]), 3, nr, nc)

    x = relu(conv_affine(x))
    x = pool(x, "max_pool")
    # Residual units: con affine relu con affine [avg_pool] add_prev relu.
    while peek() == "con":
        block_in = x
        y = relu(conv_affine(x))
        y = conv_affine(y)
        shortcut = pool(block_in, "avg_pool") if peek() == "avg_pool" else block_in
        x = relu(add_prev(y, shortcut))
    # avg_pool_everything (window 0x0 = the whole map) then fc_no_bias.
    last = take("avg_pool")
    if last.attrs["kernel"] != (0, 0):
        raise DlibFormatError("expected avg_pool_everything before the fc layer")
    g = op("GlobalAveragePool", [x[0]])
    g = op("Flatten", [g], axis=1)
    fc = take("fc")
    out = op("MatMul", [g, const("fc_w", fc.params["weight"])])
    if "bias" in fc.params:
        out = op("Add", [out, const("fc_b", fc.params["bias"])])
    if pos != len(layers):
        raise DlibFormatError(f"{len(layers) - pos} unexpected layers after the fc layer")
    nodes.append(helper.make_node("Identity", [out], ["descriptors"], name="descriptors"))

    graph = helper.make_graph(
        nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info(x_name, TensorProto.UINT8, ["n", nr, nc, 3])],
        [helper.make_tensor_value_info("descriptors", TensorProto.FLOAT, ["n", fc.attrs["n_out"]])],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 13)],
        producer_name="facekit.models.dlib_onnx",
        producer_version=str(CONVERTER_VERSION),
    )
    model.ir_version = 7  # readable by onnxruntime >= 1.8
    onnx.checker.check_model(model)
    return model.SerializeToString()


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------


def ensure_dlib_onnx(
    dat_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Path of the ONNX version of ``dat_path``, converting it on first use.

    The result is cached as ``models_dir()/dlib_face_recognition_resnet_model_v1.onnx`` (or in
    ``cache_dir``) next to a sidecar ``<name>.onnx.json`` recording the source's SHA-256,
    :data:`CONVERTER_VERSION`, and the ONNX file's own size and SHA-256 (see
    :mod:`facekit.models.derived`). A cache whose sidecar does not match, or whose bytes changed
    after it was built, is rebuilt. Both files are written to a temporary name and renamed into
    place, so concurrent converters are safe.

    Raises:
        facekit.errors.ModelError: the conversion is needed but the ``onnx`` package is not
            installed (``pip install onnx``), or the .dat file is not the expected network.
    """
    from facekit.errors import ModelError
    from facekit.models.derived import ensure_derived

    if cache_dir is None:
        from facekit.models.store import models_dir

        cache_dir = models_dir()
    out = Path(cache_dir) / ONNX_NAME

    def build(src: Path) -> bytes:
        try:
            import onnx  # noqa: F401
        except ImportError as exc:
            raise ModelError(
                "converting dlib's face model to ONNX needs the 'onnx' package (pip install onnx)"
            ) from exc
        try:
            return build_onnx(parse_dlib_resnet(src))
        except DlibFormatError as exc:
            raise ModelError(f"cannot convert {src} to ONNX: {exc}") from exc

    def legacy(data: bytes) -> dict[str, Any]:
        # The keys facekit 0.1.0 checks: with them, an older facekit sharing this model folder
        # accepts the file instead of converting it again.
        return {"converter_version": CONVERTER_VERSION, "onnx_size": len(data)}

    return ensure_derived(
        out, dat_path, CONVERTER_VERSION, build, what="dlib ONNX conversion", extra_meta=legacy
    )


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


class DlibOnnxResnet:
    """dlib's face descriptor network run by ONNX Runtime.

    Args:
        path: the ONNX file from :func:`ensure_dlib_onnx`.
        max_batch: chips per ONNX Runtime call (bounds memory for long inputs).
    """

    dim = 128

    def __init__(self, path: str | os.PathLike[str], max_batch: int = 64):
        from facekit.models.runtime import onnx_session

        self.path = Path(path)
        self.session = onnx_session(self.path)
        self.max_batch = max_batch

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """Raw 128-d descriptors of aligned 150x150 RGB uint8 chips, shape (n, 128) float32.

        ``chips`` is (n, 150, 150, 3) or a single (150, 150, 3) chip, e.g. from
        ``dlib.get_face_chip(img, shape, size=150, padding=0.25)``.
        """
        chips = np.asarray(chips)
        if chips.ndim == 3:
            chips = chips[None]
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"expected (n, 150, 150, 3) chips, got {chips.shape}")
        if chips.dtype != np.uint8:
            chips = np.clip(np.rint(chips), 0, 255).astype(np.uint8)
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        outs = [
            self.session.run(None, {"chips": np.ascontiguousarray(chips[i : i + self.max_batch])})[
                0
            ]
            for i in range(0, len(chips), self.max_batch)
        ]
        return np.concatenate(outs).astype(np.float32, copy=False)
