# For machines with registry access: the same two images as `bash scripts/image.sh`, which
# builds them with no registry at all (static binaries from the host's cargo, FROM scratch).
#   docker build -t dcr-bootstrap .                          (the init container, last stage)
#   docker build -t dcr-idp-emulator --target emulator .    (the local IdP emulator)
# Plain Dockerfile syntax (no BuildKit features), so the legacy builder works too.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN host=$(rustc -vV | sed -n 's/^host: //p') \
 && RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
      --target "$host" --target-dir target/static -p dcr-bootstrap -p dcr-idp-emulator \
 && bash scripts/rootfs.sh "target/static/$host/release/dcr-bootstrap" /image/dcr-bootstrap \
 && bash scripts/rootfs.sh "target/static/$host/release/dcr-idp-emulator" /image/dcr-idp-emulator

# The final stages are those of scripts/image.sh, line for line.
FROM scratch AS emulator
COPY --from=build /image/dcr-idp-emulator/rootfs/ /
COPY --from=build --chown=1000:1000 /image/dcr-idp-emulator/idp-state /var/lib/idp
USER 1000:1000
EXPOSE 8002
ENTRYPOINT ["/dcr-idp-emulator", "--bind", "0.0.0.0"]

FROM scratch AS dcr-bootstrap
COPY --from=build /image/dcr-bootstrap/rootfs/ /
COPY --from=build --chown=1000:1000 /image/dcr-bootstrap/app-keys /app/keys
USER 1000:1000
ENTRYPOINT ["/dcr-bootstrap"]
