# llamaserve in a container. Build stage: the same scripts/setup.sh as the README (it installs
# the build and test packages and builds a release binary). Runtime stage: only the runtime
# libraries, a non-root user, the model mounted as a volume and named by LLAMASERVE_MODEL.
#
#   docker build -t llamaserve .
#   docker run -p 8080:8080 -v /path/to/models:/models:ro \
#       -e LLAMASERVE_MODEL=/models/kjv-demo.gguf llamaserve

FROM debian:bookworm AS build
WORKDIR /src
COPY meson.build ./
COPY engine/ engine/
COPY server/ server/
# the chat page and the script that embeds it (meson runs it)
COPY webui/ webui/
COPY config/ config/
COPY cli/ cli/
COPY tests/ tests/
COPY scripts/ scripts/
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates \
    && bash scripts/setup.sh && strip build/llamaserve

FROM debian:bookworm-slim AS runtime
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends libmicrohttpd12 libcjson1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home llamaserve
COPY --from=build /src/build/llamaserve /usr/local/bin/llamaserve
COPY config/llamaserve.example.json /etc/llamaserve/llamaserve.example.json
USER llamaserve
VOLUME /models
ENV LLAMASERVE_MODEL=/models/model.gguf \
    LLAMASERVE_HOST=0.0.0.0 \
    LLAMASERVE_PORT=8080
EXPOSE 8080
# bash's /dev/tcp keeps curl out of the image
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["llamaserve"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
