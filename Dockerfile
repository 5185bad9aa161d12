# The serving image: the mlops model server with exactly one model version baked in.
# Built by `mlops image build`, which assembles the context:
#   wheelhouse/  offline wheels + requirements.txt + constraints.txt (scripts/build-wheelhouse.sh)
#   server/      the model server package
#   model/       the MLflow model, drift_reference.json and mlops-model.json (which version it is)
# No registry is reachable on our build machines, so BASE_IMAGE defaults to the public image but
# CI passes the local one from scripts/build-base-image.sh. Nothing here needs the network.
ARG BASE_IMAGE=python:3.11-slim

# Stage 1 builds the venv; only the venv reaches the image. Copying the wheelhouse into the
# image's own layers kept its 98 MB there even after `rm` (a later layer cannot shrink an
# earlier one). pip and setuptools are dropped once they have installed everything, and so are
# the packages' own test suites (scipy's, pandas', numpy's: ~110 MB nothing imports at serving
# time). Bytecode is written only for what serving imports (the last line: MLflow's pyfunc and
# scikit-learn flavours, the server's web stack), not for every module of every package (~150
# MB): the image runs with PYTHONDONTWRITEBYTECODE, and a container would otherwise compile what
# it imports at every start.
FROM ${BASE_IMAGE} AS deps
COPY wheelhouse/ /tmp/wheelhouse/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-compile --no-index \
        --find-links /tmp/wheelhouse \
        -r /tmp/wheelhouse/requirements.txt -c /tmp/wheelhouse/constraints.txt \
 && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools \
 && find /opt/venv -depth -type d -name tests -path "*/site-packages/*" -exec rm -rf {} + \
 && rm -rf /opt/venv/lib/python3*/site-packages/pkg_resources \
 && /opt/venv/bin/python3 -c "import mlflow.pyfunc, mlflow.sklearn, sklearn.ensemble, \
        sklearn.linear_model, sklearn.pipeline, sklearn.preprocessing, sklearn.tree, \
        skops.io, pandas, numpy, scipy.stats, fastapi, uvicorn, uvicorn.protocols.http.httptools_impl, \
        uvloop, prometheus_client, httpx"

FROM ${BASE_IMAGE}
# Dependencies first: this layer is shared by every model version, so rebuilds hit the cache.
COPY --from=deps /opt/venv /opt/venv
RUN getent passwd mlops >/dev/null || useradd --system --uid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin mlops

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
# bash's /dev/tcp, not Python: the probe runs every 2 s in every container, and a Python start
# (interpreter, site, urllib) cost ~0.1 s of CPU each time where bash costs a few ms.
HEALTHCHECK --interval=2s --timeout=2s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${MLOPS_PORT:-8080} && printf 'GET /ready HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n' >&3 && read -r -t 2 status <&3 && [[ $status == HTTP/1.?' 200 '* ]]"]
CMD ["python3", "-m", "server"]
