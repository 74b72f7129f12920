# One image for every role: `rpa-ml api|worker|scheduler|standalone|migrate`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The line tables stay (a panic's backtrace names file and line), compressed:
# 143 MB -> 55 MB, and Rust's backtraces read compressed sections.
RUN cargo build --release --locked --bin rpa-ml \
    && objcopy --compress-debug-sections=zlib target/release/rpa-ml

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/rpa-ml rpa-ml \
    && mkdir -p /var/lib/rpa-ml && chown rpa-ml /var/lib/rpa-ml
COPY --from=build /src/target/release/rpa-ml /usr/local/bin/rpa-ml
USER rpa-ml
WORKDIR /var/lib/rpa-ml
ENV ML_API_HOST=0.0.0.0 \
    MODEL_STORAGE_PATH=/var/lib/rpa-ml/models \
    FEATURE_STORE_PATH=/var/lib/rpa-ml/features
EXPOSE 8001
# The image has no curl and its sh is dash (no /dev/tcp): the binary checks
# itself. This suits the default command and `api`; compose and Kubernetes
# give the other roles their own check (workers: `healthcheck --worker`) or
# none (scheduler, one-shot commands).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["rpa-ml", "healthcheck"]
ENTRYPOINT ["rpa-ml"]
CMD ["standalone", "--data-dir", "/var/lib/rpa-ml/data"]
