#! /bin/bash
# Fine-tune CogVideoX-2B with LoRA on NPROC processes of this machine (default 8 GPUs; on a CPU-only machine the
# processes train on the CPU with gloo). Pass other configs as arguments, as for finetune_single_gpu.sh; e.g. a full
# fine-tune of 5B with ZeRO-3: configs/cogvideox_5b.yaml configs/sft_5b_zero3.yaml.
# Several machines: run it on each with NNODES, NODE_RANK (0 .. NNODES-1), MASTER_ADDR (node 0's address) and
# MASTER_PORT (default 29500) set, and the same --seed on every node (torchrun's static rendezvous); without them it
# runs torchrun --standalone. See README, "Fine-tuning on several machines".
# torchrun starts the processes through launch.py, which checks the inputs and the layout (cp_size) before
# they start; bad input ends in one error line, exit 2. Exits 0 after "DONE", non-zero when any process fails.

repo="$(cd "$(dirname "$0")" && pwd)"  # arguments are read from the folder you run in; the default configs are the repo's
for arg in "$@"; do  # the training options, once (no launch, no torchrun)
    if [ "${arg}" = "-h" ] || [ "${arg}" = "--help" ]; then
        exec python "${repo}/train_video.py" --help
    fi
done

echo "RUN on $(hostname), CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES PYTORCH_CUDA_ALLOC_CONF=$PYTORCH_CUDA_ALLOC_CONF"

if [ "$#" -eq 0 ]; then
    set -- "${repo}/configs/cogvideox_2b_lora.yaml" "${repo}/configs/sft.yaml"
fi
seed=$((RANDOM + 1))  # SAT seeds must be >= 1; before the arguments, so that a --seed among them wins
rendezvous=(--standalone)
if [ -n "${NNODES}${NODE_RANK}${MASTER_ADDR}${MASTER_PORT}" ]; then
    for name in NNODES NODE_RANK MASTER_ADDR; do
        if [ -z "${!name}" ]; then
            echo "error: ${name} is not set; a multi-node run needs NNODES, NODE_RANK and MASTER_ADDR (MASTER_PORT defaults to 29500)" >&2
            exit 2
        fi
    done
    case " $* " in
        *" --seed "* | *" --seed="*) ;;
        *) echo "error: a multi-node run needs the same --seed on every node (each node would draw its own)" >&2; exit 2 ;;
    esac
    rendezvous=("--nnodes=${NNODES}" "--node_rank=${NODE_RANK}" "--master_addr=${MASTER_ADDR}" "--master_port=${MASTER_PORT:-29500}")
fi
run_cmd=(python "${repo}/launch.py" "${rendezvous[@]}" "--nproc_per_node=${NPROC:-8}" "${repo}/train_video.py" --seed "${seed}" --base "$@")

printf '%q ' "${run_cmd[@]}"; echo
"${run_cmd[@]}" || { status=$?; [ "${status}" -eq 2 ] || echo "FAILED on $(hostname) (exit status ${status})" >&2; exit "${status}"; }  # 2: the error line is the last

echo "DONE on $(hostname)"
