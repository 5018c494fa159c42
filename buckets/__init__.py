"""Training on videos of mixed sizes, orientations and lengths: `data.params.buckets` (docs/buckets.md).

`spec` reads and checks the bucket list, `model_fit` checks it against the model, `assignment` puts each video in one
bucket, `table` prints the listing, `batches` orders the items so every micro-batch holds one bucket, and
`sat_loaders` puts that order into SAT's loaders."""
