# GPU serving image: NGC tritonserver with the s4c package, the model repository and FP16 TensorRT
# engines built at first start for the GPU the container finds.
#
#   docker build --build-arg TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3 -t s4c-triton .
#   docker run --gpus all --shm-size=4g -p 8001:8001 -p 8000:8000 \
#       -v s4c-models:/models -e S4C_ADMIN_KEY=... s4c-triton
#
# Not built in this repository's CI (no Docker engine on the development machines); tests check that
# the paths it copies exist and that the server flags it passes are in the bundled tritonserver --help.
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3

# Stage 1: export the embedded checkpoints to ONNX on the CPU (torch is needed only here).
FROM python:3.11-slim AS export
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements.txt pyproject.toml README.md ./
COPY src ./src
COPY model_repository ./model_repository
COPY docker/requirements-export.txt /tmp/requirements-export.txt
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.5.1 \
 && pip install -r /tmp/requirements-export.txt \
 && pip install --no-deps . \
 && s4c export repository --out model_repository

# Stage 2: the server.
FROM ${TRITON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 NUMPY_MADVISE_HUGEPAGE=0 OMP_NUM_THREADS=1
COPY docker/requirements-triton.txt /tmp/requirements-triton.txt
COPY requirements.txt pyproject.toml README.md /opt/s4c/
COPY src /opt/s4c/src
# The Python backend's stub runs the container's python3: the package goes into its site-packages.
RUN pip install -r /tmp/requirements-triton.txt \
 && pip install --no-deps /opt/s4c
COPY --from=export /src/model_repository /models
COPY docker/entrypoint.sh /usr/local/bin/s4c-entrypoint
RUN chmod 0755 /usr/local/bin/s4c-entrypoint && chown -R triton-server:triton-server /models
USER triton-server
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
  CMD curl -sf http://127.0.0.1:8000/v2/models/s4c_dual_phase/ready || exit 1
# NGC images start through /opt/nvidia/nvidia_entrypoint.sh (its entrypoint.d/ parts: banner, driver and
# shm checks, CUDA forward compatibility): chained to, not replaced.
ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh", "/usr/local/bin/s4c-entrypoint"]
