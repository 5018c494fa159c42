"""Training on videos of mixed sizes, orientations and lengths: `data.params.buckets` (docs/buckets.md).

`spec` reads and checks the bucket list, `assignment` puts each video in one bucket, `batches` orders the items so
every micro-batch holds one bucket, `sat_loaders` puts that order into SAT's loaders, `table` prints the listing."""
