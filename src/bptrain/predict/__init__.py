"""Users' own images: reading every common format, MNIST-style preprocessing, classifying."""
