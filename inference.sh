#! /bin/bash
# Sample videos with CogVideoX-2B (5B, 5B-I2V: --base configs/cogvideox_5b*.yaml configs/inference_5b.yaml). Extra arguments go to sample_video.py, e.g. --seed 42 --load <transformer dir>.
# Tiny CPU demo: bash inference.sh --base configs/tiny/cogvideox_tiny.yaml configs/tiny/inference_tiny.yaml
# Image-to-video (prompt lines text@@image_path): --image2video, e.g. bash inference.sh --base configs/tiny/cogvideox_tiny_i2v.yaml configs/tiny/inference_tiny_i2v.yaml
# Arguments pass through unchanged (paths with spaces work) and are read from the folder you run in (so are relative
# paths inside config files); the default configs are the repository's. Exits with sample_video.py's status (2: bad input).
# With NPROC, torchrun starts the processes through launch.py: the layout and every input are checked before
# they start, and bad input ends in one error line, exit 2.
set -e
repo="$(cd "$(dirname "$0")" && pwd)"
base=(--base "${repo}/configs/cogvideox_2b.yaml" "${repo}/configs/inference.yaml")
for arg in "$@"; do
    if [ "${arg}" = "--base" ]; then
        base=()
    fi
done
if [ -n "${NPROC}" ]; then  # several processes: data x --cfg-parallel x --sequence-parallel
    exec python "${repo}/launch.py" --standalone --nproc_per_node="${NPROC}" "${repo}/sample_video.py" "${base[@]}" "$@"
fi
export WORLD_SIZE=${WORLD_SIZE:-1} RANK=${RANK:-0} LOCAL_RANK=${LOCAL_RANK:-0} LOCAL_WORLD_SIZE=${LOCAL_WORLD_SIZE:-1}
exec python "${repo}/sample_video.py" "${base[@]}" "$@"
