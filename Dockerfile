# VSS web app.  CPU by default:
#   docker build -t vss .
# GPU (CUDA base image, CUDA build of torch):
#   docker build -t vss:cuda \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBIAN_FRONTEND=noninteractive

# CUDA base images have no Python of their own: take the distribution's.
RUN if ! command -v python3 >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
COPY requirements.txt .
# torch first, from the CPU (or CUDA) wheel index; the rest from PyPI.
RUN pip install "torch==$(sed -n 's/^torch==//p' requirements.txt)" --index-url "${TORCH_INDEX}" \
    && pip install -r requirements.txt "setuptools>=70.1"

COPY app.py api.py pyproject.toml ./
COPY .streamlit/ .streamlit/
COPY pages/ pages/
COPY ui/ ui/
COPY vss_core/ vss_core/
COPY config/ config/
# The `vss` command (docker run vss vss projects); the REST API: docker run vss uvicorn api:app --host 0.0.0.0
RUN pip install --no-deps --no-build-isolation -e .

RUN useradd --create-home --uid 1000 vss && mkdir -p /data && chown vss /data
USER vss
ENV CONFIG_PATH=/app/config \
    VSS_DATA_DIR=/data \
    HF_HOME=/data/huggingface
VOLUME ["/data"]
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"
# 0.0.0.0 inside the container only: publish the port to a reverse proxy, not the world (README).
CMD ["streamlit", "run", "app.py", "--server.port=8501", "--server.address=0.0.0.0"]
