"""Checkpoint and weight-file handling: SAT checkpoint folders (`sat_checkpoint`), atomic publishing (`atomic_dir`),
key and shape checks on load (`checkpoint_shapes`), checked reading of .pt / safetensors files (`weight_files`) and
the writable-folder check of output options (`writable_folder`)."""
