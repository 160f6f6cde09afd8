# A LocalStack image built here, standing in for localstack/localstack (no registry can be reached):
# localstack-core at the pin of tests/localstack/run.py with its constraints, and the subprocess Lambda
# executor, so Lambdas run inside this container (LocalStack's Docker executor would download an init
# binary and pull a Lambda runtime image). Built by tests/docker/docker_images.py from a context it
# assembles (constraints.txt, plugin/, wheels/), offline.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG LOCALSTACK_REQUIREMENT
COPY constraints.txt /tmp/build/constraints.txt
COPY plugin /tmp/build/plugin
COPY wheels /tmp/build/wheels
RUN python3 -m venv /opt/localstack \
 && /opt/localstack/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
      --find-links /tmp/build/wheels --constraint /tmp/build/constraints.txt \
      "${LOCALSTACK_REQUIREMENT}" /tmp/build/plugin \
 && rm -rf /tmp/build
# As tests/localstack/run.py starts it, but listening on the container's interfaces. The handlers run with
# this environment's Python, which has boto3 (a localstack-core dependency), as the Lambda runtime does.
ENV PATH=/opt/localstack/bin:$PATH \
    GATEWAY_LISTEN=0.0.0.0:4566 \
    LAMBDA_RUNTIME_EXECUTOR=subprocess \
    LAMBDA_SUBPROCESS_PYTHON=/opt/localstack/bin/python \
    DISABLE_EVENTS=1 \
    SKIP_SSL_CERT_DOWNLOAD=1 \
    DNS_ADDRESS=0
EXPOSE 4566
CMD ["python", "-m", "localstack.runtime.main"]
