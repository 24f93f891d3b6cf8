# The maintainer of docker-compose.yml: K2 itself (pyproject.toml pins its Python dependencies), running
# the same `k2 tables maintain --watch` as the local stack's `maintainer` service.
FROM python:3.11-slim-bookworm
WORKDIR /opt/k2/src
COPY . .
RUN pip install --no-cache-dir . && rm -rf /opt/k2/src
WORKDIR /opt/k2
ENTRYPOINT ["python"]
