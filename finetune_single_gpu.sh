#! /bin/bash
# Fine-tune CogVideoX-2B with LoRA on one GPU (or the CPU): one process, as the reference's script.
# Pass other configs as arguments, e.g. configs/tiny/cogvideox_tiny_lora.yaml configs/tiny/sft_tiny.yaml, or for 5B-I2V
# configs/cogvideox_5b_i2v_lora.yaml configs/sft_5b.yaml (see README, "5B, 5B-I2V and ZeRO-3").
# Exits with the training's status: 0 after "DONE", non-zero (2 for bad input) when training fails.

echo "RUN on $(hostname), CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"

repo="$(cd "$(dirname "$0")" && pwd)"  # arguments are read from the folder you run in; the default configs are the repo's
if [ "$#" -eq 0 ]; then
    set -- "${repo}/configs/cogvideox_2b_lora.yaml" "${repo}/configs/sft.yaml"
fi
seed=$((RANDOM + 1))  # SAT seeds must be >= 1; before the arguments, so that a --seed among them wins
run_cmd=(python "${repo}/train_video.py" --seed "${seed}" --base "$@")
export WORLD_SIZE=1 RANK=0 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1

printf '%q ' "${run_cmd[@]}"; echo
"${run_cmd[@]}" || { status=$?; [ "${status}" -eq 2 ] || echo "FAILED on $(hostname) (exit status ${status})" >&2; exit "${status}"; }  # 2: the error line is the last

echo "DONE on $(hostname)"
