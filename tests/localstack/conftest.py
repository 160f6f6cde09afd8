"""tests/localstack needs a LocalStack at AWS_ENDPOINT_URL, which run.py provides; a bare `pytest` leaves it out."""

import os

RUN_HINT = (
    "tests/localstack: not collected without AWS_ENDPOINT_URL;"
    " run `python tests/localstack/run.py -- pytest tests/localstack`"
)

collect_ignore = [] if os.environ.get("AWS_ENDPOINT_URL") else ["test_executor.py"]


def pytest_report_header(config):
    return RUN_HINT if collect_ignore else None
