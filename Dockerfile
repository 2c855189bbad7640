# llamaserve in a container. Build stage: only the build packages, the sources meson needs, and
# the binary alone, stripped (the test suite is left out: -Dtests=false). Runtime stage: Debian
# slim, the two runtime libraries, the binary and the embedded demo model, run as a numeric
# non-root user. Both stages use one base image. scripts/test-container.sh builds and runs it.
#
#   docker build -t llamaserve .
#   docker run -p 8080:8080 llamaserve                  # serves the embedded demo model
#   docker run -p 8080:8080 -v /path/to/models:/models:ro llamaserve   # the one .gguf there
#   docker run -p 8080:8080 -v /path/to/models:/models:ro \
#       -e LLAMASERVE_MODEL=/models/other.gguf llamaserve               # a file by name

FROM debian:bookworm-slim AS build
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       gcc libc6-dev meson ninja-build pkg-config libmicrohttpd-dev libcjson-dev libpcre2-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY meson.build meson_options.txt ./
COPY engine/ engine/
COPY server/ server/
# the chat page and the script that embeds it (meson runs it)
COPY webui/ webui/
COPY config/ config/
COPY cli/ cli/
# meson.build installs it (install_data), so meson setup wants it present
COPY models/kjv-demo-q8_0.gguf models/
RUN meson setup build -Dtests=false --buildtype=release \
    && ninja -C build llamaserve \
    && strip build/llamaserve

FROM debian:bookworm-slim AS runtime
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       libmicrohttpd12 libcjson1 libpcre2-8-0 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && groupadd --gid 10001 llamaserve \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin llamaserve \
    && mkdir /models
COPY --from=build /src/build/llamaserve /usr/local/bin/llamaserve
# found by the binary at <bindir>/../share/llamaserve/ when no model is given
COPY models/kjv-demo-q8_0.gguf /usr/local/share/llamaserve/kjv-demo-q8_0.gguf
COPY config/llamaserve.example.json /etc/llamaserve/llamaserve.example.json
# numeric, so that Kubernetes' runAsNonRoot can verify it
USER 10001:10001
# no LLAMASERVE_MODEL: with nothing mounted the embedded model is served; the one .gguf in a
# mounted /models, or -e LLAMASERVE_MODEL=..., takes its place
ENV LLAMASERVE_MODELS_DIR=/models \
    LLAMASERVE_HOST=0.0.0.0 \
    LLAMASERVE_PORT=8080
EXPOSE 8080
# bash's /dev/tcp keeps curl out of the image
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${LLAMASERVE_PORT:-8080} && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["llamaserve"]
CMD ["serve"]
