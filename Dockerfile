# syntax=docker/dockerfile:1
# Two images from one build:
#   docker build -t dcr-bootstrap .                         (the init container, default target)
#   docker build -t dcr-idp-emulator --target emulator .   (the local IdP emulator)

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# A static-pie glibc binary (crt-static): it runs on distroless/static and needs no shared
# libraries. glibc >= 2.34 resolves names (files, dns) without loading NSS modules.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=dcr-target \
    host=$(rustc -vV | sed -n 's/^host: //p') \
 && RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -p dcr-bootstrap --target "$host" \
 && cargo build --release --locked -p dcr-idp-emulator \
 && install -D -m 0755 "target/$host/release/dcr-bootstrap" /out/dcr-bootstrap \
 && install -D -m 0755 target/release/dcr-idp-emulator /out/dcr-idp-emulator \
 && install -d -m 0700 -o 1000 -g 1000 /out/app-keys

# glibc + CA certificates, no shell, non-root by default.
FROM gcr.io/distroless/cc-debian12:nonroot AS emulator
COPY --from=build /out/dcr-idp-emulator /usr/local/bin/dcr-idp-emulator
EXPOSE 8002
ENTRYPOINT ["/usr/local/bin/dcr-idp-emulator", "--bind", "0.0.0.0"]

# No libc needed at all; CA certificates and /etc/passwd come with the base image, and the
# binary also carries Mozilla's roots.
FROM gcr.io/distroless/static-debian12:nonroot AS dcr-bootstrap
COPY --from=build /out/dcr-bootstrap /usr/local/bin/dcr-bootstrap
# An empty /app/keys owned by uid 1000 (the BFF's): Docker gives a new named volume mounted
# here the same owner, so a non-root run can write to it.
COPY --from=build --chown=1000:1000 /out/app-keys /app/keys
# Run it as the uid of the service that reads the credentials (compose `user:`, K8s
# runAsUser) so the 0600 files it writes are readable there without chown.
ENTRYPOINT ["/usr/local/bin/dcr-bootstrap"]
