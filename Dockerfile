# CPU image for the s4c library and CLI (in-process pipeline).
# Not built in this repository's CI: the development machines have no Docker engine.
# The Triton serving image (tritonserver + TensorRT engines) replaces this with the serving work.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMPY_MADVISE_HUGEPAGE=0

WORKDIR /opt/s4c
COPY requirements.txt pyproject.toml README.md ./
COPY src ./src
RUN pip install -r requirements.txt \
 && pip install --no-deps .

RUN useradd --system --uid 1000 --create-home s4c
USER s4c
ENTRYPOINT ["s4c"]
CMD ["--help"]
