"""Models leaving bptrain (ONNX, safetensors in PyTorch's layout) and weights coming in."""
