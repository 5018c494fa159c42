#! /bin/bash
# Fine-tune CogVideoX-2B with LoRA on NPROC processes of this machine (default 8 GPUs; on a CPU-only machine the
# processes train on the CPU with gloo). Pass other configs as arguments, as for finetune_single_gpu.sh; e.g. a full
# fine-tune of 5B with ZeRO-3: configs/cogvideox_5b.yaml configs/sft_5b_zero3.yaml.

echo "RUN on $(hostname), CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"

configs="${*:-configs/cogvideox_2b_lora.yaml configs/sft.yaml}"
seed=$((RANDOM + 1))  # SAT requires a positive seed
run_cmd="torchrun --standalone --nproc_per_node=${NPROC:-8} train_video.py --base ${configs} --seed ${seed}"

echo "${run_cmd}"
eval "${run_cmd}"

echo "DONE on $(hostname)"
