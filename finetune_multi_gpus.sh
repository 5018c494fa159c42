#! /bin/bash
# Fine-tune CogVideoX-2B with LoRA on NPROC processes of this machine (default 8 GPUs; on a CPU-only machine the
# processes train on the CPU with gloo). Pass other configs as arguments, as for finetune_single_gpu.sh; e.g. a full
# fine-tune of 5B with ZeRO-3: configs/cogvideox_5b.yaml configs/sft_5b_zero3.yaml.
# Exits with torchrun's status: 0 after "DONE", non-zero when any process fails.

echo "RUN on $(hostname), CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES PYTORCH_CUDA_ALLOC_CONF=$PYTORCH_CUDA_ALLOC_CONF"

repo="$(cd "$(dirname "$0")" && pwd)"  # arguments are read from the folder you run in; the default configs are the repo's
if [ "$#" -eq 0 ]; then
    set -- "${repo}/configs/cogvideox_2b_lora.yaml" "${repo}/configs/sft.yaml"
fi
seed=$((RANDOM + 1))  # SAT seeds must be >= 1; before the arguments, so that a --seed among them wins
run_cmd=(torchrun --standalone "--nproc_per_node=${NPROC:-8}" "${repo}/train_video.py" --seed "${seed}" --base "$@")

printf '%q ' "${run_cmd[@]}"; echo
"${run_cmd[@]}" || { status=$?; echo "FAILED on $(hostname) (exit status ${status})" >&2; exit "${status}"; }

echo "DONE on $(hostname)"
