# The one image the manifest (deploy/ironhorn.yaml) runs: manager, node agent and CSI plugin.
#   docker build -t ironhorn/ironhorn:v0.1.0 .
# The web UI (ui/, built with npm; the API types come from api/openapi.json).
FROM node:20-bookworm AS ui
WORKDIR /src/ui
COPY ui/package.json ui/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY api /src/api
COPY ui /src/ui
RUN IRONHORN_UI_OUT=/ui-dist npm run build

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends protobuf-compiler && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
COPY --from=ui /ui-dist /ui-dist
# The manager embeds the UI built above (crates/ironhorn-manager/build.rs).
RUN IRONHORN_UI_DIST=/ui-dist IRONHORN_UI_REQUIRED=1 cargo build --release --locked --bin ironhorn

FROM debian:bookworm-slim
# The node's tools: filesystems (mkfs, growfs, fstrim, blkid, mount), loop devices and FUSE.
RUN apt-get update && apt-get install -y --no-install-recommends \
        xfsprogs e2fsprogs util-linux mount fuse3 kmod ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ironhorn /usr/local/bin/ironhorn
ENTRYPOINT []
CMD ["ironhorn", "--help"]
