"""A bptrain model in PyTorch: build the network, load the exported weights, classify.

    bptrain train mlp --out mlp.npz
    bptrain export mlp.npz --out mlp.safetensors
    python examples/load_in_pytorch.py mlp.safetensors pixels.npy

pixels.npy holds images as bptrain's loader gives them: float32 in [0, 1], shaped
(N, 1, 28, 28). One JSON line per image: its class and every class's probability.

The network below is the `mlp` preset's. For any other config, the file's metadata holds the
matching nn.Sequential as code: print(safe_open(path, "pt").metadata()["torch_module"]).
"""

import json
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

path, pixels = sys.argv[1], sys.argv[2]

model = nn.Sequential(
    nn.Flatten(),
    nn.Linear(784, 50),
    nn.ReLU(),
    nn.Linear(50, 10),
)
model.load_state_dict(load_file(path), strict=True)  # every tensor named, shaped and used
model.eval()  # BatchNorm's running statistics, no dropout: as bptrain predicts

with safe_open(path, framework="pt") as file:
    class_names = json.loads(file.metadata()["class_names"])

x = torch.from_numpy(np.load(pixels).astype(np.float32))
with torch.no_grad():
    probabilities = torch.softmax(model(x), dim=1)
for p in probabilities.tolist():
    label = max(range(len(p)), key=p.__getitem__)
    print(json.dumps({"label": label, "class_name": class_names[label], "probabilities": p}))
