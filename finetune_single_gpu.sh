#! /bin/bash
# Fine-tune CogVideoX-2B with LoRA on one GPU (or the CPU): one process, as the reference's script.
# Pass other configs as arguments, e.g. configs/tiny/cogvideox_tiny_lora.yaml configs/tiny/sft_tiny.yaml, or for 5B-I2V
# configs/cogvideox_5b_i2v_lora.yaml configs/sft_5b.yaml (see README, "5B, 5B-I2V and ZeRO-3").

echo "RUN on $(hostname), CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"

configs="${*:-configs/cogvideox_2b_lora.yaml configs/sft.yaml}"
seed=$((RANDOM + 1))  # SAT requires a positive seed
run_cmd="WORLD_SIZE=1 RANK=0 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 python train_video.py --base ${configs} --seed ${seed}"

echo "${run_cmd}"
eval "${run_cmd}"

echo "DONE on $(hostname)"
