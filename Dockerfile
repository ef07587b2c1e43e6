# syntax=docker/dockerfile:1.7

# Two stages: the builder turns the project and its runtime dependencies into
# wheels; the runtime stage installs those wheels (no compiler, no test extras)
# and runs the Faust worker as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

COPY pyproject.toml README.md ./
COPY dynamic_rlhf ./dynamic_rlhf
COPY service ./service
# service/schemas links here; the wheel build copies the schemas into the package.
COPY schemas/*.schema.json ./schemas/

# `pip wheel .` resolves only [project.dependencies]; the test and bench extras
# are never requested, so they never reach /wheels.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .


FROM ${PYTHON_IMAGE} AS runtime

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DRLHF_WEB_HOST=0.0.0.0 \
    DRLHF_WEB_PORT=6066

# The wheels are bind-mounted from the builder, so they are not kept in a layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/dynamic_rlhf-*.whl

# Compile every numba loop of the learner into numba's cache inside the package,
# so a worker's start-up warm-up loads them instead of compiling them (about 2 s).
RUN python -c "from dynamic_rlhf.warmup import warm_up; warm_up()"

# Faust keeps its data directory ("<app id>-data") under the working
# directory, so the working directory is the only path the worker writes to.
# The web server binds every interface (DRLHF_WEB_HOST above) so that
# Prometheus and the orchestrator's probes reach it from outside the container.
RUN groupadd --system --gid 10001 drlhf \
    && useradd --system --uid 10001 --gid drlhf --no-log-init \
       --home-dir /var/lib/dynamic-rlhf --create-home --shell /usr/sbin/nologin drlhf

WORKDIR /var/lib/dynamic-rlhf
USER 10001:10001

EXPOSE 6066

# /health/ready returns 200 only once the worker has joined its consumer group
# and recovered its tables; urlopen raises on any other status, which exits 1.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DRLHF_WEB_PORT', '6066') + '/health/ready', timeout=4)"]

ENTRYPOINT ["dynamic-rlhf"]
CMD ["worker"]
