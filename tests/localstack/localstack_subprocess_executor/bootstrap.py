"""One Lambda execution environment: loads the handler, then serves LocalStack's executor protocol.

Started by the subprocess executor as `python -I bootstrap.py --listen-fd N` in the unzipped code
directory. It plays the part of LocalStack's Go init plus the AWS Python runtime: receives
`POST /invoke` on the inherited socket and answers on LocalStack's executor endpoint with
`status/ready` (or `status/error`), then per invocation `logs` followed by `response` or `error`.
Standard library only, Python >= 3.11: it runs with whichever interpreter the executor was told to use.
"""

import argparse
import decimal
import importlib
import json
import logging
import os
import socket
import sys
import threading
import time
import traceback
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

# Talk to LocalStack directly, whatever proxy the environment names.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _Tee:
    """Stands in for stdout/stderr: keeps what the handler writes for the invocation's log."""

    def __init__(self, stream, captured: list[str]):
        self._stream = stream
        self._captured = captured

    def write(self, text: str) -> int:
        self._captured.append(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _LambdaContext:
    """The subset of the AWS Python runtime's context object that handlers use."""

    def __init__(self, request_id: str, invoked_arn: str, timeout_s: float):
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _InitError(Exception):
    """The handler could not be loaded; `payload` is the error AWS would return for it."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.payload = {"errorType": error_type, "errorMessage": message, "stackTrace": []}


class _Runtime:
    def __init__(self, handler_name: str):
        self.endpoint = os.environ["LOCALSTACK_RUNTIME_ENDPOINT"]
        self.runtime_id = os.environ["LOCALSTACK_RUNTIME_ID"]
        self.timeout_s = float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "3"))
        self.request_id = ""
        self.captured: list[str] = []
        self._install_log_capture()
        self.handler = self._load_handler(handler_name)

    def _install_log_capture(self) -> None:
        sys.stdout = _Tee(sys.stdout, self.captured)
        sys.stderr = _Tee(sys.stderr, self.captured)
        # Like the AWS runtime: a root handler, root level left at WARNING until the function sets it.
        handler = logging.StreamHandler(sys.stdout)
        formatter = logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(message)s", datefmt="%Y-%m-%dT%H:%M:%S"
        )
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
        logging.getLogger().addHandler(handler)

    @staticmethod
    def _load_handler(handler_name: str):
        # The same error types and messages as the AWS Python runtime.
        module_name, _, function_name = handler_name.rpartition(".")
        if not module_name:
            raise _InitError("Runtime.MalformedHandlerName", f"Bad handler '{handler_name}'")
        module_name = module_name.replace("/", ".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise _InitError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {e}") from e
        except SyntaxError as e:
            raise _InitError("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {e}") from e
        except Exception as e:
            raise _InitError(type(e).__name__, str(e)) from e
        if not hasattr(module, function_name):
            raise _InitError("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'")
        return getattr(module, function_name)

    def post(self, path: str, body: bytes) -> None:
        _post(f"{self.endpoint}/{path}", body)

    def invoke(self, invocation: dict) -> None:
        """Runs one invocation and reports it; resets the environment when the handler overruns."""
        self.request_id = invocation["invoke-id"]
        os.environ["_X_AMZN_TRACE_ID"] = invocation.get("trace-id") or ""
        self.captured.clear()
        print(f"START RequestId: {self.request_id} Version: {os.environ.get('AWS_LAMBDA_FUNCTION_VERSION')}")
        outcome: dict = {}
        started = time.monotonic()
        worker = threading.Thread(target=self._run_handler, args=(invocation, outcome), daemon=True)
        worker.start()
        worker.join(self.timeout_s)
        timed_out = worker.is_alive()
        if timed_out:
            outcome = {
                "error": {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"RequestId: {self.request_id} Error: Task timed out after "
                    f"{self.timeout_s:.2f} seconds",
                }
            }
        duration_ms = (time.monotonic() - started) * 1000
        print(f"END RequestId: {self.request_id}")
        print(f"REPORT RequestId: {self.request_id}\tDuration: {duration_ms:.2f} ms")
        self.post(f"invocations/{self.request_id}/logs", json.dumps({"logs": "".join(self.captured)}).encode())
        if "error" in outcome:
            self.post(f"invocations/{self.request_id}/error", json.dumps(outcome["error"]).encode())
        else:
            self.post(f"invocations/{self.request_id}/response", outcome["response"])
        if timed_out:
            # A thread cannot be killed: start afresh in this process, keeping the listening socket,
            # as AWS resets the sandbox after a timeout.
            os.execv(sys.executable, [*sys.orig_argv, "--reinit"])

    def _run_handler(self, invocation: dict, outcome: dict) -> None:
        try:
            event = json.loads(invocation["payload"] or "null")
        except ValueError as e:
            outcome["error"] = self._error_payload("Runtime.UnmarshalError", f"Unable to unmarshal input: {e}")
            return
        context = _LambdaContext(self.request_id, invocation["invoked-function-arn"], self.timeout_s)
        try:
            result = self.handler(event, context)
        except Exception as e:
            outcome["error"] = self._error_payload(type(e).__name__, str(e), e.__traceback__)
            print(f"[ERROR] {type(e).__name__}: {e}", file=sys.stderr)
            traceback.print_exception(e, file=sys.stderr)
            return
        try:
            outcome["response"] = json.dumps(result, default=_json_default).encode()
        except (TypeError, ValueError) as e:
            outcome["error"] = self._error_payload("Runtime.MarshalError", f"Unable to marshal response: {e}")

    def _error_payload(self, error_type: str, message: str, tb=None) -> dict:
        # AWS's shape: the exception's class name as errorType, the frames below the runtime's own.
        frames = [frame for frame in traceback.extract_tb(tb) if frame.filename != __file__]
        return {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": self.request_id,
            "stackTrace": traceback.format_list(frames),
        }


def _post(url: str, body: bytes) -> None:
    # JSON content type: LocalStack's endpoint reads the raw body, which a form content type would hide.
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with _OPENER.open(request, timeout=30) as response:
        response.read()


def _json_default(value):
    # The AWS runtime's encoder accepts Decimal (what DynamoDB returns).
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _exit_when_parent_exits() -> None:
    # stdin is a pipe from the executor: end of file means LocalStack is gone.
    sys.stdin.buffer.read()
    os._exit(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-fd", type=int, required=True, help="inherited listening socket")
    parser.add_argument("--reinit", action="store_true", help="restart after a timeout: do not report ready")
    args = parser.parse_args()
    threading.Thread(target=_exit_when_parent_exits, daemon=True).start()
    sys.path.insert(0, os.getcwd())

    endpoint, runtime_id = os.environ["LOCALSTACK_RUNTIME_ENDPOINT"], os.environ["LOCALSTACK_RUNTIME_ID"]
    try:
        runtime = _Runtime(os.environ["_HANDLER"])
    except _InitError as e:
        traceback.print_exc()
        _post(f"{endpoint}/status/{runtime_id}/error", json.dumps(e.payload).encode())
        return 1

    class InvokeHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/invoke":
                self.send_error(404)
                return
            invocation = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
            threading.Thread(target=runtime.invoke, args=(invocation,)).start()

        def log_message(self, format, *args) -> None:
            pass  # one line per invoke would drown the function's own output

    server = HTTPServer(("127.0.0.1", 0), InvokeHandler, bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=args.listen_fd)
    os.set_inheritable(args.listen_fd, True)  # kept across the re-exec after a timeout
    if not args.reinit:
        runtime.post(f"status/{runtime_id}/ready", b"{}")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
