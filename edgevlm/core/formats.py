"""Constants of the binary formats edgevlm reads itself, apart from the readers' logic (as gguf-py keeps
``constants.py`` beside ``gguf_reader.py``).

- ONNX Runtime adapter files (``.onnx_adapter``): a FlatBuffer, schema
  ``onnxruntime/core/flatbuffers/schema/adapter.fbs``: root ``Adapter {format_version, adapter_version,
  model_version, parameters: [Parameter {name: string, dims: [int64], data_type: int32, raw_data: [uint8]}]}``,
  file identifier ``TORT``. Read by :mod:`edgevlm.core.adapterfile`.
- ONNX models (``.onnx``): a protobuf (``onnx/onnx.proto``). :mod:`edgevlm.core.onnxproto` walks only the
  messages that can hold a TensorProto, to find external-data locations without parsing the weights.
"""

from __future__ import annotations

# -- ONNX Runtime adapter file (FlatBuffer) ------------------------------------------------------------------
ADAPTER_IDENTIFIER = b"TORT"
ADAPTER_FORMAT_VERSION = 1  # what ONNX Runtime 1.20-1.23 write and read
ADAPTER_MAX_PARAMETERS = 1 << 16
# Field slots of the tables, in schema order.
ADAPTER_FIELDS = ("format_version", "adapter_version", "model_version", "parameters")
PARAMETER_FIELDS = ("name", "dims", "data_type", "raw_data")
TENSOR_FLOAT = 1  # TensorProto.DataType FLOAT (ONNX's numbering, also the adapter schema's)
MAX_RANK = 8

# -- ONNX protobuf --------------------------------------------------------------------------------------------
WIRE_VARINT, WIRE_FIXED64, WIRE_LENGTH, WIRE_FIXED32 = 0, 1, 2, 5
# message -> {field number: message type} for the fields on a path to a TensorProto's external data entries
# (ModelProto.graph/functions, GraphProto.node/initializer/sparse_initializer, NodeProto.attribute,
# AttributeProto.t/g/tensors/graphs/sparse_tensor(s), SparseTensorProto.values/indices,
# TensorProto.external_data).
ONNX_TENSOR_PATHS = {
    "model": {7: "graph", 25: "function"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
}
# StringStringEntryProto: key = 1, value = 2; the key naming the data file
ENTRY_KEY, ENTRY_VALUE, LOCATION_KEY = 1, 2, b"location"
