"""bptrain: a from-scratch NumPy backpropagation trainer for MNIST."""

__version__ = "0.1.0"
