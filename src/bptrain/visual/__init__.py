"""Pictures: computational graphs (graph.py) and plots of runs (plot.py, on matplotlib)."""
