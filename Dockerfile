# Video GRPO Studio on a CUDA GPU: the engine with flash-attn and DeepSpeed, serving the studio.
FROM nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    VGRPO_WORKSPACE=/workspace

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
# torch first (flash-attn builds against it), then the project with the GPU extras.
RUN pip install -c scripts/constraints.txt torch torchvision \
    && pip install -c scripts/constraints.txt --no-build-isolation -e '.[gpu]'

EXPOSE 7860
VOLUME /workspace
CMD ["vgrpo", "studio", "--workspace", "/workspace", "--host", "0.0.0.0", "--port", "7860"]
