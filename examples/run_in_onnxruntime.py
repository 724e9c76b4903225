"""A bptrain model in ONNX Runtime, with no bptrain installed: classify images.

    bptrain export mlp.npz --out mlp.onnx
    python examples/run_in_onnxruntime.py mlp.onnx pixels.npy

pixels.npy holds images as bptrain's loader gives them: float32 in [0, 1], shaped
(N, 1, 28, 28). One JSON line per image: its class and every class's probability.
"""

import json
import sys

import numpy as np
import onnxruntime

path, pixels = sys.argv[1], sys.argv[2]

session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
class_names = json.loads(session.get_modelmeta().custom_metadata_map["class_names"])

x = np.load(pixels).astype(np.float32)
probabilities, logits = session.run(["probabilities", "logits"], {"pixels": x})
for p in probabilities.tolist():
    label = max(range(len(p)), key=p.__getitem__)
    print(json.dumps({"label": label, "class_name": class_names[label], "probabilities": p}))
