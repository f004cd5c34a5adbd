# Build stage: the release binary (migrations and Swagger UI are embedded in it).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && cp target/release/rowguard /rowguard

# Run stage: just the binary.
FROM debian:bookworm-slim
RUN useradd --system --home-dir /var/lib/rowguard rowguard && mkdir -p /var/lib/rowguard && chown rowguard /var/lib/rowguard
COPY --from=build /rowguard /usr/local/bin/rowguard
USER rowguard
EXPOSE 8080
ENTRYPOINT ["rowguard"]
CMD ["serve"]
