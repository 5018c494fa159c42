"""Precomputed training inputs: each item's VAE posterior and T5 embedding, encoded once (`tools/precompute.py`).

- `manifest`: what a cache was made from (content-changing settings, weight identities, source files) and the
  comparison with a run's configs.
- `store`: the per-item safetensors files, written atomically, checked for completeness.
- `dataset`: the dataset a cache folder gives (what `data_video.SFTDataset.create_dataset_function` returns for one).
- `run_inputs`: which of a run's datasets are caches, checked against its configs before the model is built.
- `posterior`: the posterior sample drawn at step time, as the VAE's own encode draws it.
- `precompute`: the two encode passes (T5, then VAE) behind `tools/precompute.py`.
"""
