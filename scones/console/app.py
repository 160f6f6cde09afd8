"""The console's web application (Starlette, as the model server): its routes, the Host check against DNS
rebinding, the per-console token that every write needs (CSRF), and the headers that keep the browser from
running anything the console did not send itself (a strict Content-Security-Policy: no inline script)."""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import jinja2
from botocore.exceptions import ClientError, ParamValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from scones.console.history import truncated
from scones.console.monitoring import MonitoringReport
from scones.console.store import MAX_IMAGE_BYTES, ConsoleActionError, ConsoleStore
from scones.console.views import OUTCOMES, STATUSES, Filters, execution_view, executions_view

HERE = Path(__file__).resolve().parent
TOKEN_HEADER = "X-Console-Token"
MAX_JSON_BYTES = 262_144  # Step Functions' input limit: a larger input could not start anyway
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# The monitoring report is a page of its own (scones/monitoring/page.py), framed by the console's.
REPORT_SECURITY_POLICY = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'"


@dataclass
class ConsoleSettings:
    port: int  # the console's own: the only Host it answers is 127.0.0.1:port or localhost:port
    target: str  # what it shows, for the page header ("embedded ministack at http://...", "AWS (eu-west-1)")
    stack_name: str
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def allowed_hosts(self) -> frozenset[str]:
        return frozenset({f"127.0.0.1:{self.port}", f"localhost:{self.port}"})


class HostAndHeadersMiddleware:
    """Refuse any Host but our own (a page on another site whose name resolves to 127.0.0.1 sends its own
    name: DNS rebinding), and add the security headers to every answer."""

    def __init__(self, app, settings: ConsoleSettings):
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        if host not in self.settings.allowed_hosts:
            response = PlainTextResponse("refused: this console answers only its own address", status_code=421)
            return await response(scope, receive, send)
        is_report = scope["path"].startswith("/monitoring/report/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                policy = REPORT_SECURITY_POLICY if is_report else CONTENT_SECURITY_POLICY
                headers += [
                    (b"content-security-policy", policy.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-store"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def template_environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    environment.filters["query"] = lambda params: urlencode({k: v for k, v in params.items() if v})
    environment.filters["when"] = lambda d: d.strftime("%Y-%m-%d %H:%M:%S") if d else ""
    environment.filters["pretty"] = lambda value: json.dumps(truncated(value), indent=2, ensure_ascii=False)
    return environment


def create_app(store: ConsoleStore, settings: ConsoleSettings, report: MonitoringReport | None = None) -> Starlette:
    templates = template_environment()

    def page(name: str, status_code: int = 200, **context) -> Response:
        html = templates.get_template(name).render(
            settings=settings, writes=store.allow_writes, token=settings.token, **context
        )
        return Response(html, status_code, media_type="text/html; charset=utf-8")

    def check_write(request: Request) -> None:
        sent = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(sent.encode(), settings.token.encode()):
            raise PermissionError("this action needs the console's token (open the console's own page)")
        origin = request.headers.get("origin")
        if origin is not None and origin.removeprefix("http://") not in settings.allowed_hosts:
            raise PermissionError("refused: a request from another origin")

    async def write(request: Request, action) -> Response:
        try:
            check_write(request)
            return JSONResponse(await action())
        except PermissionError as e:
            return JSONResponse({"error": str(e)}, status_code=403)
        except ConsoleActionError as e:
            return JSONResponse({"error": str(e)}, status_code=400)

    def executions(request: Request) -> Response:
        filters = Filters.from_query(request.query_params)
        view = executions_view(store, filters)
        return page("executions.html", view=view, filters=filters, statuses=STATUSES, outcomes=OUTCOMES)

    def executions_table(request: Request) -> Response:
        filters = Filters.from_query(request.query_params)
        view = executions_view(store, filters)
        etag = f'"{view.version}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"etag": etag})
        html = templates.get_template("executions_table.html").render(view=view, filters=filters)
        return Response(html, media_type="text/html; charset=utf-8", headers={"etag": etag})

    def execution(request: Request) -> Response:
        arn = request.query_params.get("arn", "")
        try:
            view = execution_view(store, arn)
        except Exception as e:  # an ARN that is not an execution here: say so on the page
            if not arn or type(e).__name__ in ("ClientError", "ParamValidationError", "ExecutionDoesNotExist"):
                return page("missing.html", 404, arn=arn, reason=str(e))
            raise
        return page("execution.html", view=view, arn=arn)

    def described_or_none(request: Request) -> dict | None:
        """The execution the query names, or None when it names none here."""
        try:
            return store.execution(request.query_params.get("arn", ""))
        except (ClientError, ParamValidationError):
            return None

    def execution_logs(request: Request) -> Response:
        described = described_or_none(request)
        if described is None:
            return PlainTextResponse("no such execution", status_code=404)
        event = json.loads(described.get("input") or "null")
        correlation = str(event.get("id")) if isinstance(event, dict) and event.get("id") else None
        lines = store.log_lines(correlation, described["startDate"], described.get("stopDate")) if correlation else []
        html = templates.get_template("logs.html").render(lines=lines, correlation_id=correlation)
        return Response(html, media_type="text/html; charset=utf-8")

    def execution_image(request: Request) -> Response:
        described = described_or_none(request)
        if described is None:
            return PlainTextResponse("no such execution", status_code=404)
        event = json.loads(described.get("input") or "null")
        if not (isinstance(event, dict) and event.get("s3_bucket") and event.get("s3_key")):
            return PlainTextResponse("this execution names no image", status_code=404)
        found = store.image(str(event["s3_bucket"]), str(event["s3_key"]))
        if found is None:
            return PlainTextResponse("the image is not readable (gone, or not PNG/JPEG)", status_code=404)
        body, content_type = found
        return Response(body, media_type=content_type)

    def monitoring(request: Request) -> Response:
        return page("monitoring.html", report=report)

    async def monitoring_draw(request: Request) -> Response:
        async def draw():
            if report is None:
                raise ConsoleActionError("no monitoring source: the stack has no image bucket")
            summary = await run_in_threadpool(report.draw)
            return {"drawn": True, "summary": summary}

        return await write(request, draw)

    def monitoring_file(request: Request) -> Response:
        path = report.file(request.path_params["name"]) if report else None
        if path is None:
            return PlainTextResponse("no such file in the report", status_code=404)
        return FileResponse(path)

    async def upload(request: Request) -> Response:
        async def act():
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_IMAGE_BYTES:
                    raise ConsoleActionError(f"the image is larger than the {MAX_IMAGE_BYTES} bytes accepted")
            return await run_in_threadpool(store.upload, bytes(body))

        return await write(request, act)

    async def start(request: Request) -> Response:
        async def act():
            body = await request.body()
            if len(body) > MAX_JSON_BYTES:
                raise ConsoleActionError(f"the input is larger than {MAX_JSON_BYTES} bytes")
            try:
                sent = json.loads(body)
            except ValueError as e:
                raise ConsoleActionError(f"not JSON: {e}") from e
            if not isinstance(sent, dict) or not isinstance(sent.get("input"), dict):
                raise ConsoleActionError('send {"machine": "image" or "batch", "input": {...}}')
            arn = await run_in_threadpool(store.start, str(sent.get("machine", "image")), sent["input"])
            return {"execution_arn": arn, "url": "/execution?" + urlencode({"arn": arn})}

        return await write(request, act)

    async def rerun(request: Request) -> Response:
        async def act():
            result = await run_in_threadpool(store.rerun, request.query_params.get("arn", ""))
            return {**result, "url": "/execution?" + urlencode({"arn": result["execution_arn"]})}

        return await write(request, act)

    routes = [
        Route("/", lambda request: RedirectResponse("/executions", status_code=303)),
        Route("/executions", executions),
        Route("/executions/table", executions_table),
        Route("/execution", execution),
        Route("/execution/logs", execution_logs),
        Route("/execution/image", execution_image),
        Route("/monitoring", monitoring),
        Route("/monitoring/draw", monitoring_draw, methods=["POST"]),
        Route("/monitoring/report/{name:path}", monitoring_file),
        Route("/actions/upload", upload, methods=["POST"]),
        Route("/actions/start", start, methods=["POST"]),
        Route("/actions/rerun", rerun, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(HostAndHeadersMiddleware, settings=settings)
    return app
