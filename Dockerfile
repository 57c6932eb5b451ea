# The one image the manifest (deploy/ironhorn.yaml) runs: manager, node agent and CSI plugin.
#   docker build -t ironhorn/ironhorn:v0.1.0 .
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends protobuf-compiler && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ironhorn

FROM debian:bookworm-slim
# The node's tools: filesystems (mkfs, growfs, fstrim, blkid, mount), loop devices and FUSE.
RUN apt-get update && apt-get install -y --no-install-recommends \
        xfsprogs e2fsprogs util-linux mount fuse3 kmod ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ironhorn /usr/local/bin/ironhorn
ENTRYPOINT []
CMD ["ironhorn", "--help"]
