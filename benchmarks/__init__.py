"""Benchmarks against a peer measured side by side (ratios), and the GPU check (`gpu_check.py`)."""
