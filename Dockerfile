# A small static image running as non-root. Build: docker build -t consent-token-operator .
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev gcc
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin consent-token-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/release/consent-token-operator /usr/local/bin/consent-token-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/consent-token-operator"]
