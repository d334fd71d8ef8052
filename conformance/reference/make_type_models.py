"""Writes one tiny ONNX model per wasi:nn tensor type, for the type-surface conformance test.

Each model `types/<type>.onnx` has one input `x` of shape [2, 3] and element type <type>, and one
output `y`: `y = Identity(x)` (so the bytes must come back unchanged, for every type) and a second
output `shape = Shape(x)` (int64), so each model also returns an i64 tensor it computed.

Usage: make_type_models.py DEST   (run with the venv python from scripts/pyenv.sh)
Also writes DEST/types/models.json with the SHA-256 of each file.
"""

import hashlib
import json
import os
import sys

import onnx
from onnx import TensorProto, helper

TYPES = {
    "f16": TensorProto.FLOAT16,
    "f32": TensorProto.FLOAT,
    "f64": TensorProto.DOUBLE,
    "bf16": TensorProto.BFLOAT16,
    "u8": TensorProto.UINT8,
    "i32": TensorProto.INT32,
    "i64": TensorProto.INT64,
}


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    dest = os.path.join(sys.argv[1], "types")
    os.makedirs(dest, exist_ok=True)
    digests = {}
    for name, elem in TYPES.items():
        x = helper.make_tensor_value_info("x", elem, [2, 3])
        y = helper.make_tensor_value_info("y", elem, [2, 3])
        shape = helper.make_tensor_value_info("shape", TensorProto.INT64, [2])
        graph = helper.make_graph(
            [
                helper.make_node("Identity", ["x"], ["y"]),
                helper.make_node("Shape", ["x"], ["shape"]),
            ],
            f"identity_{name}",
            [x],
            [y, shape],
        )
        model = helper.make_model(
            graph,
            producer_name="outpost-conformance",
            opset_imports=[helper.make_opsetid("", 17)],
        )
        model.ir_version = 8
        onnx.checker.check_model(model)
        path = os.path.join(dest, f"{name}.onnx")
        data = model.SerializeToString()
        with open(path, "wb") as f:
            f.write(data)
        digests[f"{name}.onnx"] = hashlib.sha256(data).hexdigest()
    with open(os.path.join(dest, "models.json"), "w") as f:
        json.dump(digests, f, indent=2, sort_keys=True)
    print(dest)


if __name__ == "__main__":
    main()
