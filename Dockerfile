# Tollgate image: the `gateway` and `admin` commands and the demo upstream.
# Build stage: turn the source into a wheel, so the runtime image holds an ordinary
# (non-editable) install and no source tree.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY admin ./admin
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[redis]"

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Inside a container the listeners must accept connections from other containers;
    # publish ports on the host deliberately (docker-compose.yml binds them to 127.0.0.1).
    GATEWAY_HOST=0.0.0.0 \
    ADMIN_HOST=0.0.0.0
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "tollgate[redis]" \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /home/tollgate --create-home tollgate
USER tollgate
WORKDIR /home/tollgate
EXPOSE 8080 8081 8082
# Migrations run once, from the `migrate` service; the proxy does not race them.
CMD ["gateway", "serve", "--no-migrate"]
