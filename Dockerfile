# The serving image: the mlops model server with exactly one model version baked in.
# Built by `mlops image build`, which assembles the context:
#   wheelhouse/  offline wheels + requirements.txt + constraints.txt (scripts/build-wheelhouse.sh)
#   server/      the model server package
#   model/       the MLflow model, drift_reference.json and mlops-model.json (which version it is)
# No registry is reachable on our build machines, so BASE_IMAGE defaults to the public image but
# CI passes the local one from scripts/build-base-image.sh. Nothing here needs the network.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# Dependencies first: this layer is shared by every model version, so rebuilds hit the cache.
COPY wheelhouse/ /tmp/wheelhouse/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse \
        -r /tmp/wheelhouse/requirements.txt -c /tmp/wheelhouse/constraints.txt \
 && rm -rf /tmp/wheelhouse \
 && (getent passwd mlops >/dev/null || useradd --system --uid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin mlops)

# The prediction log's mount point, the server user's: a deployment mounts its own volume here
# (kept across version switches), and a new volume takes this directory's owner.
RUN mkdir -p /var/lib/mlops-predictions && chown 10001:10001 /var/lib/mlops-predictions

# Owned by root and read-only to the server user (10001): the model cannot be changed from inside.
COPY server/ /app/server/
COPY model/ /model/

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MLOPS_MODEL_URI=/model \
    MLOPS_HOST=127.0.0.1 \
    MLOPS_PORT=8080 \
    HOME=/tmp

USER 10001
WORKDIR /tmp
EXPOSE 8080
HEALTHCHECK --interval=2s --timeout=2s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('MLOPS_PORT', '8080'), timeout=2)"]
CMD ["python3", "-m", "server"]
