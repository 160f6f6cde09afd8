"""LocalStack Lambda runtime executor that runs zip-packaged Python functions as local subprocesses.

LocalStack's own executor starts a Docker container per execution environment; this one starts
`bootstrap.py` instead, in the function's unzipped code directory, and speaks the same protocol to
LocalStack's executor endpoint (see bootstrap.py). Selected with `LAMBDA_RUNTIME_EXECUTOR=subprocess`.

The handler's interpreter is `LAMBDA_SUBPROCESS_PYTHON` (default: LocalStack's own, which has boto3);
it must have boto3, as the Lambda runtime does. The handler sees only the environment LocalStack
gives an execution environment (function Environment, credentials, `AWS_ENDPOINT_URL` back to
LocalStack) plus PATH and LANG. No isolation beyond a process: this is for tests, not for untrusted code.
"""

import functools
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from localstack import config
from localstack.aws.api.lambda_ import PackageType
from localstack.services.lambda_.invocation.executor_endpoint import ExecutorEndpoint, StatusErrorException
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin
from localstack.services.lambda_.invocation.runtime_executor import LambdaRuntimeException, RuntimeExecutor

LOG = logging.getLogger(__name__)

BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
LOOPBACK = "127.0.0.1"


def handler_python() -> str:
    return os.environ.get("LAMBDA_SUBPROCESS_PYTHON") or sys.executable


@functools.cache
def python_version(python: str) -> str:
    """`3.11` for an interpreter path; checked once per interpreter."""
    command = [python, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


class SubprocessRuntimeExecutor(RuntimeExecutor):
    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self.executor_endpoint = ExecutorEndpoint(self.id, container_address=LOOPBACK)
        self.process: subprocess.Popen | None = None
        self.request_id = ""
        self.stopping = False
        # Beside the unzipped code (LocalStack puts it under the temp directory too), kept after shutdown.
        self.log_path = Path(tempfile.gettempdir()) / "lambda-subprocess" / f"{self.id}.log"

    def start(self, env_vars: dict[str, str]) -> None:
        self.executor_endpoint.start()
        code_dir = self.function_version.config.code.get_unzipped_code_location()
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "LANG": "C.UTF-8",
            **{key: str(value) for key, value in env_vars.items()},
            "LAMBDA_TASK_ROOT": str(code_dir),
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The executor binds the socket and hands it over: no port race, and LocalStack's first
        # /invoke waits in the backlog instead of failing while the handler module imports.
        with socket.create_server((LOOPBACK, 0)) as listener, self.log_path.open("ab") as log:
            self.executor_endpoint.container_port = listener.getsockname()[1]
            self.process = subprocess.Popen(
                [handler_python(), "-I", "-u", str(BOOTSTRAP), "--listen-fd", str(listener.fileno())],
                cwd=code_dir,
                env=env,
                stdin=subprocess.PIPE,  # closed when LocalStack exits: the bootstrap then exits too
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=[listener.fileno()],
            )
        threading.Thread(target=self._watch_process, name=f"lambda-subprocess-{self.id}", daemon=True).start()
        self.executor_endpoint.wait_for_startup()

    def _watch_process(self) -> None:
        """Turns an unexpected exit into an error now, instead of a wait for LocalStack's time-outs."""
        returncode = self.process.wait()
        if self.stopping:
            return
        endpoint = self.executor_endpoint
        if endpoint.startup_future is not None and not endpoint.startup_future.done():
            message = f"Runtime exited with error: exit status {returncode}. Logs: {self.log_path}"
            payload = json.dumps({"errorType": "Runtime.ExitError", "errorMessage": message}).encode()
            endpoint.startup_future.set_exception(StatusErrorException(message, payload=payload))
        elif endpoint.invocation_future is not None and not endpoint.invocation_future.done():
            message = f"RequestId: {self.request_id} Error: Runtime exited with error: exit status {returncode}"
            payload = json.dumps({"errorType": "Runtime.ExitError", "errorMessage": message}).encode()
            result = InvocationResult(self.request_id, payload, is_error=True, logs=self.get_logs())
            endpoint.invocation_future.set_result(result)

    def stop(self) -> None:
        self.stopping = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        try:
            self.executor_endpoint.shutdown()
        except Exception as e:
            LOG.debug("Error while stopping executor endpoint of %s: %s", self.id, e)

    def get_address(self) -> str:
        return LOOPBACK

    def get_endpoint_from_executor(self) -> str:
        host = config.GATEWAY_LISTEN[0].host
        return LOOPBACK if host in ("", "0.0.0.0", "::") else host

    def get_runtime_endpoint(self) -> str:
        return (
            f"http://{self.get_endpoint_from_executor()}:{config.GATEWAY_LISTEN[0].port}"
            f"{self.executor_endpoint.get_endpoint_prefix()}"
        )

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        self.request_id = payload["invoke-id"]
        return self.executor_endpoint.invoke(payload)

    def get_logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "Execution environment was not started"

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        runtime = function_version.config.runtime or ""
        if function_version.config.package_type != PackageType.Zip or not runtime.startswith("python"):
            raise LambdaRuntimeException(
                f"The subprocess executor runs zip-packaged Python functions only, not {runtime or 'images'}"
            )
        python = handler_python()
        if runtime != f"python{python_version(python)}":
            LOG.warning("Function runtime %s runs on Python %s (%s)", runtime, python_version(python), python)
        function_version.config.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        pass  # nothing was prepared beyond the unzipped code, which LocalStack removes itself

    @classmethod
    def validate_environment(cls) -> bool:
        try:
            python_version(handler_python())
        except (OSError, subprocess.CalledProcessError) as e:
            LOG.warning("LAMBDA_SUBPROCESS_PYTHON=%s cannot run: %s", handler_python(), e)
            return False
        return True


class SubprocessRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    name = "subprocess"

    def load(self, *args, **kwargs):
        return SubprocessRuntimeExecutor
