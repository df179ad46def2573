# tempo-s3-shard: the proxy and its three runtime dependencies on Node's slim
# image, running as the image's unprivileged `node` user.
#
#   docker build -t tempo-s3-shard .
#   docker run -p 8080:8080 -v $PWD/config.json:/etc/tempo-s3-shard/config.json:ro tempo-s3-shard

FROM node:20-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# The `prepare` script compiles, and lib/ is not here yet.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY lib ./lib
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --no-audit --no-fund

FROM node:20-slim
ENV NODE_ENV=production
# Where the health check asks; follow listen_addr if you change the port.
# /readyz fails while a shard bucket cannot be reached; /healthz only says
# the process answers (stack.yml uses it, so Swarm does not restart proxies
# over a backend outage they cannot fix).
ENV HEALTHCHECK_URL=http://127.0.0.1:8080/readyz
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/lib ./dist/lib
COPY bin ./bin
USER node
EXPOSE 8080
# Slim images have no curl: Node's own fetch does the probe.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.HEALTHCHECK_URL, { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "/app/bin/tempo-s3-shard"]
CMD ["--config", "/etc/tempo-s3-shard/config.json"]
