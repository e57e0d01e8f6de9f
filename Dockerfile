# syntax=docker/dockerfile:1
# ale: one image for every role (python -m ale_site.entrypoint web|worker|beat|watcher|migrate).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the virtualenv with the runtime requirements only ------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.txt /tmp/requirements.txt
# The "# Runtime" block of requirements.txt: the development cluster, the embedded Redis and
# the test tools stay out of the image.
RUN awk '/^# /{n++} n==1' /tmp/requirements.txt > /tmp/runtime.txt \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install -r /tmp/runtime.txt

# --- runtime ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEBUG=false \
    STATIC_ROOT=/app/staticfiles \
    ALE_VAR_DIR=/tmp/ale
RUN groupadd --system --gid 10001 ale \
 && useradd --system --uid 10001 --gid ale --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ale
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY manage.py ./
COPY ale_site ale_site
COPY api api
COPY clusters clusters
COPY environments environments
COPY hooks hooks
COPY services services
COPY spaces spaces
# The RBAC rules ale uses, which the cluster access check asks each cluster for.
COPY deploy/kubernetes/base/rbac.yaml deploy/kubernetes/base/rbac.yaml
COPY templates templates
COPY static static
# Static files are collected once, here, and served by WhiteNoise (compressed, hashed names);
# settings refuse to load without secrets when DEBUG is off, so the build passes throwaway ones.
RUN SECRET_KEY=collectstatic-only-not-a-secret ALE_SECRET_KEYS=collectstatic-only-not-a-secret \
    python -m ale_site.entrypoint collectstatic \
 && python -m compileall -q ale_site clusters environments services spaces
# Bytecode compiled above; at run time the root filesystem is read-only (PYTHONDONTWRITEBYTECODE).
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["python", "-m", "ale_site.entrypoint"]
CMD ["web"]
