# A LocalStack image built here, standing in for localstack/localstack (no registry can be reached):
# localstack-core at the pin of tests/localstack/run.py with its constraints, and the subprocess Lambda
# executor, so Lambdas run inside this container (LocalStack's Docker executor would download an init
# binary and pull a Lambda runtime image). Built by tests/docker/docker_images.py from a context it
# assembles (constraints.txt, plugin/, wheels/), offline.
# The Lambda handlers run on the Python the template declares (python3.11), which Debian 13 does not have:
# Debian 12's, from the bookworm base, copied in beside LocalStack's own 3.13 with a venv holding boto3.
ARG BASE_IMAGE
ARG HANDLER_BASE_IMAGE

FROM ${HANDLER_BASE_IMAGE} AS handler-python
ARG HANDLER_BOTO3
COPY handler-wheels /tmp/handler-wheels
RUN python3.11 -m venv /opt/lambda-python3.11 \
 && /opt/lambda-python3.11/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
      --find-links /tmp/handler-wheels "${HANDLER_BOTO3}" \
 && rm -rf /tmp/handler-wheels

FROM ${BASE_IMAGE}
ARG LOCALSTACK_REQUIREMENT
COPY --from=handler-python /usr/bin/python3.11 /usr/bin/python3.11
COPY --from=handler-python /usr/lib/python3.11 /usr/lib/python3.11
COPY --from=handler-python /opt/lambda-python3.11 /opt/lambda-python3.11
COPY constraints.txt /tmp/build/constraints.txt
COPY plugin /tmp/build/plugin
COPY wheels /tmp/build/wheels
RUN python3 -m venv /opt/localstack \
 && /opt/localstack/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
      --find-links /tmp/build/wheels --constraint /tmp/build/constraints.txt \
      "${LOCALSTACK_REQUIREMENT}" /tmp/build/plugin \
 && rm -rf /tmp/build
# As tests/localstack/run.py starts it, but listening on the container's interfaces. The handlers run with
# Python 3.11 and the project's boto3 pin, as on the host passes (the venv's python3.11 names the interpreter
# itself, not /usr/bin/python3, which here is 3.13).
ENV PATH=/opt/localstack/bin:$PATH \
    GATEWAY_LISTEN=0.0.0.0:4566 \
    LAMBDA_RUNTIME_EXECUTOR=subprocess \
    LAMBDA_SUBPROCESS_PYTHON=/opt/lambda-python3.11/bin/python3.11 \
    DISABLE_EVENTS=1 \
    SKIP_SSL_CERT_DOWNLOAD=1 \
    DNS_ADDRESS=0
EXPOSE 4566
CMD ["python", "-m", "localstack.runtime.main"]
