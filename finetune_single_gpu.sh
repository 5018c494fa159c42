#! /bin/bash
# Fine-tune CogVideoX-2B with LoRA on one GPU (or the CPU): one process, as the reference's script.
# Pass other configs as arguments, e.g. configs/tiny/cogvideox_tiny_lora.yaml configs/tiny/sft_tiny.yaml.

echo "RUN on $(hostname), CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"

configs="${*:-configs/cogvideox_2b_lora.yaml configs/sft.yaml}"
seed=$((RANDOM + 1))  # SAT requires a positive seed
run_cmd="WORLD_SIZE=1 RANK=0 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 python train_video.py --base ${configs} --seed ${seed}"

echo "${run_cmd}"
eval "${run_cmd}"

echo "DONE on $(hostname)"
