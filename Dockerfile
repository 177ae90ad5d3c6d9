# tessera in a container: build with the Debian 12 GStreamer development packages, run on a slim
# Debian 12 with only the runtime plugins. Keep the package lists in step with scripts/setup.sh.
#
#   docker build -t tessera .
#   docker run --rm --network host tessera serve --rtc-ip <host address>
#
# Host networking is the simple way: WebRTC media uses one UDP port per session. Without it,
# publish a range and pin it: -p 8080:8080 -p 40000-40199:40000-40199/udp and
# `serve --udp-ports 40000-40199 --public-ip <host address>`.

FROM rust:1-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential pkg-config cmake \
      libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev \
      libopus-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY pipelines ./pipelines
COPY web ./web
COPY tests ./tests
# A workspace member: its manifest must be there for the workspace to load (only the server is built).
COPY bench ./bench
RUN cargo build --release --locked --bin tessera

FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends \
      ca-certificates \
      libgstreamer1.0-0 gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
      gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice \
      gstreamer1.0-x libopus0 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/tessera /usr/local/bin/tessera
COPY pipelines /usr/share/tessera/pipelines
EXPOSE 8080/tcp
ENTRYPOINT ["/usr/local/bin/tessera"]
CMD ["serve"]
