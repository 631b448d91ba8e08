# Video GRPO Studio on a CUDA GPU: the engine with flash-attn and DeepSpeed, serving the studio.
#
# One CUDA throughout: the pinned torch 2.14.1 wheel (scripts/constraints.txt) is built for CUDA 13.0
# (torch.version.cuda == "13.0"), so the base image carries the CUDA 13.0 toolkit, and flash-attn is
# compiled here with that nvcc against that torch (its build refuses a toolkit whose CUDA major
# differs from torch's). A CUDA 12.x base image cannot build it.
#
# Host requirement: an NVIDIA driver that supports CUDA 13.0, i.e. R580 or newer (>= 580.65.06 on
# Linux), and the NVIDIA Container Toolkit (`docker run --gpus all`). flash-attn 2 needs Ampere
# (sm_80) or newer.
#
# The studio listens on 0.0.0.0 inside the container, so it starts only with a login
# (`-e VGRPO_AUTH=user:password`), or open with `-e VGRPO_ALLOW_UNAUTHENTICATED=1` (loud warning).
FROM nvidia/cuda:13.0.1-cudnn-devel-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    VGRPO_WORKSPACE=/workspace
# flash-attn's CUDA build: bounded parallel jobs (each nvcc takes several GB of RAM), and the GPU
# generations it compiles kernels for (Ampere, Ada, Hopper, Blackwell).
ENV MAX_JOBS=4 \
    TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0;10.0;12.0"

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev git ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

COPY pyproject.toml README.md ./
COPY scripts/constraints.txt scripts/constraints.txt
COPY trainer trainer
COPY studio studio
COPY assets assets
COPY configs configs
# torch first (flash-attn builds against it), checked to be the CUDA 13.0 build this image is for;
# then the project with the GPU extras (flash-attn takes its prebuilt wheel for this torch and CUDA
# major when one is published, else compiles with this image's nvcc).
RUN pip install -c scripts/constraints.txt torch torchvision \
    && python -c "import torch, sys; sys.exit(0 if torch.version.cuda == '13.0' else f'torch is built for CUDA {torch.version.cuda}, this image has 13.0')" \
    && pip install -c scripts/constraints.txt packaging ninja psutil wheel setuptools \
    && pip install -c scripts/constraints.txt --no-build-isolation -e '.[gpu]'

EXPOSE 7860
VOLUME /workspace
CMD ["vgrpo", "studio", "--workspace", "/workspace", "--host", "0.0.0.0", "--port", "7860"]
