# Kafka Connect image of docker-compose.yml: the same Kafka as `k2 stack up`, with the same plugin
# jars, resolved by the same script from the same pinned list (stack/artifacts.toml).
ARG KAFKA_VERSION=4.1.1

FROM python:3.11-slim-bookworm AS plugins
RUN apt-get update \
 && apt-get install -y --no-install-recommends maven openjdk-17-jdk-headless \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY stack/artifacts.toml stack/resolve.py stack/
RUN python3 stack/resolve.py --cache-dir /cache --dest /plugins iceberg-sink apicurio-converter

FROM apache/kafka:${KAFKA_VERSION}
COPY --from=plugins /plugins /opt/k2/connect/plugins
COPY stack/config/connect-distributed.properties stack/config/log4j2.properties /opt/k2/config/
# plugin.path=plugins in the worker file is relative to this directory, as in the local stack.
WORKDIR /opt/k2/connect
# The local stack's heap and -XX:+ExitOnOutOfMemoryError (stack/services.py CONNECT_JVM_FLAGS says why);
# docker-compose.yml sets the same, tests/unit/test_compose.py checks both.
ENV KAFKA_LOG4J_OPTS="-Dlog4j2.configurationFile=/opt/k2/config/log4j2.properties" \
    KAFKA_HEAP_OPTS="-Xmx1g -XX:+ExitOnOutOfMemoryError"
EXPOSE 8083
CMD ["/opt/kafka/bin/connect-distributed.sh", "/opt/k2/config/connect-distributed.properties"]
