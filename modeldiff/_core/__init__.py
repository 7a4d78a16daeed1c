"""Torch-free values and rules: graphs, the comparison kernel, the result protocol."""
