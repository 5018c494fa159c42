"""Fine-tuning with SAT's `training_main`: the pieces `train_video.py` plugs into SAT's loop.

- `forward_step`: the per-step hooks; `batch` (device, model-parallel broadcast), `eval_logging` (texts, samples).
- `cpu_compat`: the one shim for SAT's CUDA-only calls, applied only without CUDA.
- `optimizer_config`: the CPU fallback for `sat.ops.FusedEmaAdam`.
- `checkpoint_contents`, `checkpoint_io`, `resume`: slim checkpoints (published atomically by `checkpoints.atomic_dir`) and exact
  resumption.
- `sat_loop`: routes SAT's checkpoint IO and loop start through the modules above.
- `fixed_loss`: a deterministic loss (fixed timesteps, fixed noise) to compare weights.
"""
