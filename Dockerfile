# syntax=docker/dockerfile:1
# CurateCT production image: one image for web, Celery workers, beat and the DICOM listener
# (docker-compose.yml picks the command). Build: docker compose build

# ---------------------------------------------------------------- frontend (Vite build)
FROM node:20-bookworm-slim AS frontend
WORKDIR /src/frontend
# Lock file first: the npm layer is reused until dependencies change.
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

# ---------------------------------------------------------------- application
FROM python:3.11-slim-bookworm AS app

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# tcmalloc: torch on CPU is 1.7-2x faster with it (the compose file preloads it in the workers).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libtcmalloc-minimal4 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin curatect

WORKDIR /app
COPY requirements.txt ./
# torch first, from the CPU index: installed after monai & co. (or from PyPI) it would be a
# multi-GB CUDA build. GPU workers: build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install torch==2.13.0 --index-url "${TORCH_INDEX}" \
    && pip install -r requirements.txt

COPY . .
COPY --from=frontend /src/frontend/dist ./frontend/dist

# Static files collected at build time so WhiteNoise serves them from one folder. The base settings
# are enough for collectstatic (no database, no secrets needed; the throwaway key keeps them from
# writing a generated one into the image).
RUN DJANGO_SETTINGS_MODULE=platform_core.settings DJANGO_SECRET_KEY=collectstatic-only \
    python manage.py collectstatic --noinput -v 0 \
    && mkdir -p /data \
    && chown curatect:curatect /data

ENV DJANGO_SETTINGS_MODULE=platform_core.settings_production \
    CURATECT_DATA_DIR=/data

USER curatect
VOLUME ["/data"]
EXPOSE 8000 11112

CMD ["gunicorn", "platform_core.wsgi:application", "--bind", "0.0.0.0:8000", \
     "--workers", "1", "--worker-class", "gthread", "--threads", "8", "--timeout", "120", \
     "--access-logfile", "-"]
