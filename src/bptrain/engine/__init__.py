"""The book: backpropagation as the seed notes teach it (Deep Learning from Scratch, chapter 5 on).

Read it in the order `docs/reading.md` gives: nodes, layers, losses, network, train, optimizers.
Everything here is plain NumPy; the few places that hand work to `accel/` say so in one line.
"""
