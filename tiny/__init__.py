"""Tiny random models and synthetic videos in the real formats: what the tests, the benchmarks and the CPU demos run
on (no real weights can be downloaded here). Command lines: tools/make_tiny_weights.py, tools/tiny_t5.py,
tools/make_tiny_data.py."""
