# syntax=docker/dockerfile:1
# One image for every Cloister service: `docker run IMAGE service NAME --config FILE`.
# docs/containers.md says how to build and run it, and what the execution service's task sandbox
# needs from the container runtime (it refuses to start without it).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Stage 1: the wheels of Cloister and of everything it depends on.
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# `vision` adds OpenCV for builtin-face-detection; build with --build-arg EXTRAS= to leave it out.
ARG EXTRAS=vision
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

# Stage 2: the runtime. Only the venv, the sandbox's system packages and a user of its own.
FROM ${PYTHON_IMAGE}
# bubblewrap and libseccomp2 make the task sandbox (docs/sandbox.md). Versions come with the base
# image's Debian release; pinning exact ones would break the build at each security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap libseccomp2 \
    && rm -rf /var/lib/apt/lists/*
ARG EXTRAS=vision
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/cloister \
    && /opt/cloister/bin/pip install --no-cache-dir --no-index --find-links /wheels "cloister${EXTRAS:+[$EXTRAS]}"
# Services other than execution run as this user; execution runs as root in its own container,
# because only root can give each task a uid and cgroups of its own (docs/containers.md).
RUN groupadd --system --gid 10001 cloister \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/cloister --shell /usr/sbin/nologin cloister \
    && install -d -m 0700 -o 10001 -g 10001 /var/lib/cloister
ENV PATH=/opt/cloister/bin:$PATH \
    CLOISTER_STATE_DIR=/var/lib/cloister \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/cloister
USER 10001:10001
# API ports (authentication, frontend) and the internal ones; docs/configuration.md lists them.
EXPOSE 7776 7777 17776 17777 17778 17779 17780 17781
ENTRYPOINT ["cloister"]
CMD ["--help"]
