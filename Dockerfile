# aiyield: one image for the worker, the exporter and the gateway (`aiyield worker|exporter|gateway`).
#   docker build -t aiyield .
#   docker run --rm aiyield --help
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . /src
RUN pip install . \
    && rm -rf /src

# Unprivileged user; its home is the working directory, where the worker may keep local state files.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/aiyield --create-home aiyield
USER 10001:10001
WORKDIR /var/lib/aiyield
ENV HOME=/var/lib/aiyield

# gateway (HTTP, OTLP over gRPC), exporter (/metrics and the live page)
EXPOSE 8787 4317 9464

ENTRYPOINT ["aiyield"]
CMD ["--help"]
