"""The model server: SageMaker's inference container contract on Starlette + uvicorn.

- `GET /ping`: 200 once the model is loaded, 503 (with the reason) if it could not be; `model_version` counts
  the models loaded (1, then one more per reload), `reloads` the reloads done.
- SIGHUP: load the model again from the model directory, off the event loop, and swap it in once it is warm;
  requests in flight finish on the old model and none is refused (a model that does not load is logged and
  reported on /ping as `reload_error`, and the old one keeps serving).
- `POST /invocations`: the container contract; image bytes in, `[p_bicycle, p_motorcycle]` out.
- Variants (local_model/variants.py, SCONES_VARIANTS_FILE): each request goes to one production variant by
  weight, named in the answer's `x-Amzn-Invoked-Production-Variant` and in its capture's folder; a shadow variant
  answers a copy of it afterwards, captured under its own name with the same inferenceId, never returned.
  SIGHUP reads the file again (weights, models). `GET /variants?since=T`: each variant's weight, its counts and
  its answers since unix time T (latency, top score, error), which `scones deploy --canary` bakes on.
- `POST /endpoints/{name}/invocations`: the SageMaker Runtime API path, answering as the Runtime service
  does (container errors wrapped as `ModelError`, HTTP 424), so `boto3.client("sagemaker-runtime")` with
  AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME pointing here works unchanged. Only the served endpoint's name is
  answered (SCONES_ENDPOINT_NAME); another name gets SageMaker's ValidationError, as on AWS.
- `POST /any-endpoint/endpoints/{name}/invocations`: the same for any name SageMaker allows, logged once per name:
  for code written against another endpoint (`scones solution run`), never used by the project's own stack.

Run: `python -m local_model.serve [--model-dir D] [--host H] [--port P]` (settings: local_model.settings).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import logging
import random
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local_model import inference
from local_model.capture import CaptureWriter
from local_model.http_protocol import protocol_with_header_timeout
from local_model.inference import BodyTooLargeError, EmptyBodyError, InferenceRequestError
from local_model.settings import (
    ANY_ENDPOINT_PATH,
    ENDPOINT_NAME_PATTERN,
    ENDPOINT_NAME_VAR,
    SAGEMAKER_ENDPOINT_NAME_PATTERN,
    ServeSettings,
    SettingsError,
    read_serve_settings,
)
from local_model.variants import EndpointVariants, Variant, VariantsError, read_variants, single_variant

logger = logging.getLogger("local_model.serve")  # not __name__: that is "__main__" under `python -m`

INFERENCE_ID_HEADER = "x-amzn-sagemaker-inference-id"
INVOKED_VARIANT_HEADER = "x-Amzn-Invoked-Production-Variant"
# Every image is decoded and scored on one of MODEL_THREADS dedicated threads, never on the event loop, so
# /ping and other connections stay live whatever a client sends (a 15 KB PNG can declare 2048x2048 pixels).
# Dedicated and few: torch keeps per-thread buffers in every thread that ever ran the model, so scoring in
# Starlette's pool of up to 40 threads left a burst at 16 concurrent requests ~700 MB above its baseline
# (benchmarks/serve_stress.py); on two cores more threads add memory, not throughput. Freed decode buffers go
# back to the OS after each large image (glibc's malloc_trim). Captures are buffered from Starlette's pool,
# where waiting for buffer space blocks no scoring.
MODEL_THREADS = 2
TRIM_AFTER_PIXELS = 512 * 512
# A body over the limit is read and discarded up to this many bytes before the 413 is sent, so that a client
# that asked for `Connection: close` reads the JSON answer instead of a reset (the kernel resets a socket
# closed with unread data). Larger bodies are cut off: their client may see a reset.
DRAIN_MAX_BYTES = 64 * 1024 * 1024


class ModelNotLoadedError(InferenceRequestError):
    """The model failed to load, so the server cannot answer invocations."""

    status = 503


RECENT_ANSWERS = 20_000  # per variant, what GET /variants can report (a bake reads its window from them)


@dataclass
class VariantStats:
    """What one variant did: counts since start, and its recent answers as (unix time, latency ms, top score or
    None for an error)."""

    invocations: int = 0
    errors: int = 0  # 5xx: the model's fault, not the client's
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_ANSWERS))

    def record(self, latency_ms: float, top_score: float | None, error: bool) -> None:
        self.invocations += 1
        self.errors += error
        self.recent.append((time.time(), round(latency_ms, 3), top_score, error))


@dataclass
class ServerState:
    settings: ServeSettings
    model: object | None = None  # the first production variant's (the only one without a variants file)
    routing: EndpointVariants | None = None
    models: dict[str, object] = field(default_factory=dict)  # by variant name
    stats: dict[str, VariantStats] = field(default_factory=dict)  # by variant name
    shadow_tasks: set = field(default_factory=set)  # shadow answers in flight (kept referenced until done)
    load_error: str | None = None
    capture: CaptureWriter | None = None
    model_threads: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(MODEL_THREADS, thread_name_prefix="model")
    )
    model_version: int = 1  # one more per reload that succeeded
    reloads: int = 0  # reloads done, succeeded or failed
    reload_error: str | None = None  # why the last reload failed (the previous model still serves)
    reload_asked: threading.Event = field(default_factory=threading.Event)  # set by SIGHUP
    accepted_names: set[str] = field(default_factory=set)  # other names answered under ANY_ENDPOINT_PATH, logged


def keep_reloading(state: ServerState, stop: threading.Event) -> None:
    """The reloader thread: each time a reload is asked for, load the endpoint again (its variants file, or the
    model directory) and swap it in once warm; on failure the loaded one keeps serving. Off the event loop, since
    loading takes a second or two and requests go on meanwhile; reloads asked for during one are done once."""
    while not stop.is_set():
        if not state.reload_asked.wait(timeout=0.5):
            continue
        state.reload_asked.clear()
        routing, models, error = load_endpoint(state.settings, state)
        if routing is not None:
            install(state, routing, models)
            state.load_error, state.reload_error = None, None
            state.model_version += 1
            logger.info("reloaded the endpoint: %s (version %d)", describe_routing(routing), state.model_version)
        else:
            state.reload_error = error
            logger.error("the reload failed; the previous endpoint keeps serving: %s", error)
        state.reloads += 1


def describe_routing(routing: EndpointVariants) -> str:
    parts = [f"{v.name} weight {v.weight:g} ({v.model_dir})" for v in routing.production]
    parts += [f"shadow {v.name} ({v.model_dir})" for v in routing.shadow]
    return ", ".join(parts)


def install(state: ServerState, routing: EndpointVariants, models: dict[str, object]) -> None:
    """Swap in a loaded endpoint: requests from now on are routed by it (one reference each, so a request
    never sees half of it)."""
    for variant in routing.all:
        state.stats.setdefault(variant.name, VariantStats())
    state.models = models
    state.routing = routing
    state.model = models[routing.production[0].name]


def load_endpoint(settings: ServeSettings, previous: ServerState | None = None):
    """(routing, models by variant, None) or (None, None, reason). A variant's model already loaded from the same
    unchanged file is reused (registry versions never change), so a weight step loads nothing."""
    try:
        routing = read_variants(settings.variants_file, settings.model_dir)
    except VariantsError as e:
        return None, None, f"{type(e).__name__}: {e}"
    if settings.variants_file is None or not settings.variants_file.is_file():
        model, error = load_model(settings)
        return (routing, {routing.production[0].name: model}, None) if model is not None else (None, None, error)
    loaded = {}
    known = _loaded_by_file(previous)
    for variant in routing.all:
        key = _file_key(variant.model_dir)
        if key is not None and key in known:
            loaded[variant.name] = known[key]
            continue
        model, error = load_model(replace(settings, model_dir=variant.model_dir))
        if model is None:
            return None, None, f"variant {variant.name}: {error}"
        loaded[variant.name] = model
    return routing, loaded, None


def _file_key(path: Path):
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size) if Path(path).is_file() else None


def _loaded_by_file(state: ServerState | None) -> dict:
    if state is None or state.routing is None:
        return {}
    return {
        key: state.models[v.name]
        for v in state.routing.all
        if v.name in state.models and (key := _file_key(v.model_dir)) is not None
    }


def load_model(settings: ServeSettings):
    """Load and warm the model; returns (model, None) or (None, reason) so the server can report it."""
    torch.set_num_threads(settings.torch_threads)
    try:
        model = inference.model_fn(settings.model_dir)
        # The first forward pass builds oneDNN kernels (tens of ms); pay it here, not on a user's request.
        inference.predict_fn(np.zeros((1, 32, 32, 3), dtype=np.uint8), model)
        return model, None
    except Exception as e:  # any failure must leave a server that says why on /ping, not a crash loop
        logger.exception("could not load the model from %s", settings.model_dir)
        return None, f"{type(e).__name__}: {e}"


def error_response(error: InferenceRequestError) -> JSONResponse:
    # After a 408 the rest of the body may still come, or never: the connection is not reused.
    headers = {"Connection": "close"} if error.status == 408 else None
    return JSONResponse(
        {"error": type(error).__name__, "message": str(error)}, status_code=error.status, headers=headers
    )


class SlowBodyError(InferenceRequestError):
    """The client stopped sending the request body."""

    status = 408


async def _chunks(stream: AsyncIterator[bytes], timeout_s: float) -> AsyncIterator[bytes]:
    iterator = aiter(stream)
    while True:
        try:
            yield await asyncio.wait_for(anext(iterator), timeout_s)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise SlowBodyError(f"no body data for {timeout_s:g} s; send the whole body at once") from None


async def _drain(chunks: AsyncIterator[bytes], already: int) -> None:
    """Read and drop the rest of a refused body, up to DRAIN_MAX_BYTES in all."""
    async for chunk in chunks:
        already += len(chunk)
        if already > DRAIN_MAX_BYTES:
            return


async def read_body(
    stream: AsyncIterator[bytes], declared_length: str | None, limit: int, chunk_timeout_s: float
) -> bytes:
    """The request body, refusing (413) anything over `limit` bytes without ever holding more than that, and
    (408) a client silent for `chunk_timeout_s` in the middle of it (settings: SCONES_BODY_TIMEOUT_SECONDS)."""
    chunks = _chunks(stream, chunk_timeout_s)
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        if int(declared_length) <= DRAIN_MAX_BYTES:
            await _drain(chunks, 0)
        raise BodyTooLargeError(f"request body is {declared_length} bytes; the limit is {limit} bytes")
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            await _drain(chunks, size)
            raise BodyTooLargeError(f"request body is larger than the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def answer(
    state: ServerState, body: bytes, content_type: str | None, accept: str | None, model=None
) -> tuple[str, str]:
    """The four SageMaker handlers in order, with `model` (default: the server's first); raises
    InferenceRequestError for anything the client got wrong. Runs on the model threads."""
    model = state.model if model is None else model
    if model is None:
        raise ModelNotLoadedError(f"the model is not loaded: {state.load_error}")
    inference.check_accept(accept)  # first: no point decoding an image we cannot answer in the asked format
    try:
        data = inference.input_fn(body, content_type, state.settings.max_image_pixels)
    finally:
        if inference.declared_pixels(body) > TRIM_AFTER_PIXELS:
            release_freed_memory()
    return inference.output_fn(inference.predict_fn(data, model), accept)


def release_freed_memory() -> None:
    """Give memory freed by large decodes back to the OS (glibc keeps it in its arenas otherwise)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # not glibc: nothing to trim with
        return None


_LIBC = _load_libc() if hasattr(ctypes, "CDLL") else None


def top_score(text: str, media: str) -> float | None:
    """The answer's highest class probability (JSON answers), for the variant's low-confidence rate."""
    if not media.startswith("application/json"):
        return None
    try:
        scores = json.loads(text)
        return float(max(scores)) if isinstance(scores, list) and scores else None
    except (ValueError, TypeError):
        return None


async def invoke(request: Request, endpoint_name: str) -> Response:
    """Route the request to one production variant (by weight) and answer with it; a shadow variant answers a
    copy afterwards, captured only. Every answer names its variant (INVOKED_VARIANT_HEADER)."""
    state: ServerState = request.app.state.server
    routing, models = state.routing, state.models  # one consistent endpoint for this request
    variant = routing.pick(random.random()) if routing is not None else Variant("AllTraffic", Path("."))
    response, body, content_type, answered = await answer_with(request, state, variant, models.get(variant.name))
    response.headers[INVOKED_VARIANT_HEADER] = variant.name
    if answered is None:
        return response
    text, media = answered
    inference_id = request.headers.get(INFERENCE_ID_HEADER)
    if routing is not None and routing.shadow and inference_id is None:
        inference_id = str(uuid.uuid4())  # pairs the production answer with the shadow's in the captures
    if state.capture is not None:  # may wait for buffer space (local_model/capture.py): off the loop
        await run_in_threadpool(
            state.capture.capture, endpoint_name, body, content_type, text, media, inference_id, variant.name
        )
    for shadow in routing.shadow if routing is not None else ():
        task = asyncio.create_task(
            answer_shadow(state, shadow, models.get(shadow.name), endpoint_name, body, content_type, inference_id)
        )
        state.shadow_tasks.add(task)
        task.add_done_callback(state.shadow_tasks.discard)
    return response


async def answer_with(request: Request, state: ServerState, variant: Variant, model):
    """(response, body, content type, (text, media) or None when it is an error response)."""
    content_type = request.headers.get("content-type")
    accept = request.headers.get("accept")
    body = b""
    started = time.perf_counter()
    stats = state.stats.setdefault(variant.name, VariantStats())
    try:
        inference.check_content_type(content_type)  # refuse before reading a body we would not use
        # A refused body is left unread: uvicorn discards the rest, so the client still gets our answer.
        settings = state.settings
        declared = request.headers.get("content-length")
        body = await read_body(request.stream(), declared, settings.max_body_bytes, settings.body_timeout_s)
        if not body:
            raise EmptyBodyError("the request body is empty; send the image bytes")
        started = time.perf_counter()  # the model's latency (SageMaker's ModelLatency), not the upload's
        text, media = await asyncio.get_running_loop().run_in_executor(
            state.model_threads, answer, state, body, content_type, accept, model
        )
    except InferenceRequestError as e:
        if e.status >= 500:
            stats.record((time.perf_counter() - started) * 1000, None, True)
        return error_response(e), body, content_type, None
    except ClientDisconnect:
        # The client went away mid-body: nobody to answer, nothing wrong on our side.
        logger.info("client disconnected before its request body was complete (%s)", request.url.path)
        return Response(status_code=499), body, content_type, None
    except Exception as e:
        # A bug on our side, not the client's: still a JSON answer naming the failure, and the server lives on.
        logger.exception("unexpected error while answering %s", request.url.path)
        stats.record((time.perf_counter() - started) * 1000, None, True)
        response = JSONResponse(
            {"error": "InternalServerError", "message": f"unexpected {type(e).__name__}; see the server log"},
            status_code=500,
        )
        return response, body, content_type, None
    stats.record((time.perf_counter() - started) * 1000, top_score(text, media), False)
    return Response(text, media_type=media), body, content_type, (text, media)


async def answer_shadow(
    state: ServerState,
    shadow: Variant,
    model,
    endpoint_name: str,
    body: bytes,
    content_type: str | None,
    inference_id: str | None,
) -> None:
    """The shadow variant's answer to a copy of a request: counted and captured, returned to no one."""
    stats = state.stats.setdefault(shadow.name, VariantStats())
    started = time.perf_counter()
    try:
        text, media = await asyncio.get_running_loop().run_in_executor(
            state.model_threads, answer, state, body, content_type, None, model
        )
    except Exception as e:  # the caller was answered already: a shadow's failure is only counted and logged
        stats.record((time.perf_counter() - started) * 1000, None, True)
        logger.warning("shadow variant %s failed: %s: %s", shadow.name, type(e).__name__, e)
        return
    stats.record((time.perf_counter() - started) * 1000, top_score(text, media), False)
    if state.capture is not None:
        await run_in_threadpool(
            state.capture.capture, endpoint_name, body, content_type, text, media, inference_id, shadow.name
        )


async def variants_report(request: Request) -> Response:
    """Each variant's weight, counts, and its answers since `?since=` (unix seconds; default: all kept)."""
    state: ServerState = request.app.state.server
    try:
        since = float(request.query_params.get("since", "0"))
    except ValueError:
        return JSONResponse({"error": "ValidationError", "message": "since must be unix seconds"}, status_code=400)
    routing = state.routing
    current = {v.name: v for v in routing.all} if routing is not None else {}
    report = []
    for name, stats in list(state.stats.items()):
        variant = current.get(name)
        report.append(
            {
                "VariantName": name,
                "CurrentWeight": variant.weight if variant is not None else 0.0,
                "Shadow": variant.is_shadow if variant is not None else name.startswith("Shadow"),
                "InService": variant is not None,
                "ModelDataUrl": str(variant.model_dir) if variant is not None else None,
                "Invocations": stats.invocations,
                "Errors": stats.errors,
                "Answers": [list(entry) for entry in list(stats.recent) if entry[0] >= since],
            }
        )
    return JSONResponse({"model_version": state.model_version, "variants": report})


async def ping(request: Request) -> Response:
    state: ServerState = request.app.state.server
    if state.model is None:
        return error_response(ModelNotLoadedError(f"the model is not loaded: {state.load_error}"))
    health = {"status": "healthy", "model_version": state.model_version, "reloads": state.reloads}
    if state.routing is not None and state.routing != single_variant(state.settings.model_dir):
        health["variants"] = {v.name: v.weight for v in state.routing.production}
        if state.routing.shadow:
            health["shadow_variants"] = [v.name for v in state.routing.shadow]
    if state.reload_error:
        health["reload_error"] = state.reload_error
    if state.capture is not None:  # lost captures are visible to whoever watches the health check
        health["capture"] = state.capture.stats()
    return JSONResponse(health)


async def invocations(request: Request) -> Response:
    return await invoke(request, request.app.state.server.settings.capture.endpoint_name)


async def runtime_invocations(request: Request) -> Response:
    """The SageMaker Runtime InvokeEndpoint API: container errors come back as ModelError (424)."""
    name = request.path_params["endpoint_name"]
    if not ENDPOINT_NAME_PATTERN.match(name):
        return JSONResponse(
            {"message": f"endpoint name {name!r} does not satisfy {ENDPOINT_NAME_PATTERN.pattern}"},
            status_code=400,
            headers={"x-amzn-ErrorType": "ValidationError"},
        )
    served = request.app.state.server.settings.capture.endpoint_name
    if name != served:
        # SageMaker's answer for an endpoint that does not exist, with what this server does serve.
        return JSONResponse(
            {
                "message": f"Endpoint {name} not found: this model server serves the endpoint {served!r} "
                f"(set {ENDPOINT_NAME_VAR} to serve another name)"
            },
            status_code=400,
            headers={"x-amzn-ErrorType": "ValidationError"},
        )
    return await runtime_invoke(request, name)


async def any_endpoint_invocations(request: Request) -> Response:
    """InvokeEndpoint under ANY_ENDPOINT_PATH: any name SageMaker allows is answered by the served model, and
    logged the first time it is seen (the name a course solution hard-codes, say)."""
    name = request.path_params["endpoint_name"]
    if not SAGEMAKER_ENDPOINT_NAME_PATTERN.match(name):
        return JSONResponse(
            {"message": f"endpoint name {name!r} does not satisfy {SAGEMAKER_ENDPOINT_NAME_PATTERN.pattern}"},
            status_code=400,
            headers={"x-amzn-ErrorType": "ValidationError"},
        )
    state: ServerState = request.app.state.server
    served = state.settings.capture.endpoint_name
    if name != served and name not in state.accepted_names:
        state.accepted_names.add(name)
        logger.info(
            "endpoint name %r accepted under %s: answered by the served endpoint %r", name, ANY_ENDPOINT_PATH, served
        )
    return await runtime_invoke(request, served)


async def runtime_invoke(request: Request, name: str) -> Response:
    response = await invoke(request, name)
    if response.status_code == 200:
        return response
    original = response.body.decode()
    return JSONResponse(
        {
            "ErrorCode": "CLIENT_ERROR_FROM_MODEL",
            "Message": f"Received client error ({response.status_code}) from primary with message {original}",
            "OriginalStatusCode": response.status_code,
            "OriginalMessage": original,
        },
        status_code=424,
        headers={"x-amzn-ErrorType": "ModelError", INVOKED_VARIANT_HEADER: response.headers[INVOKED_VARIANT_HEADER]},
    )


def create_app(settings: ServeSettings | None = None, model=None) -> Starlette:
    """The ASGI app. Settings are read from the environment now unless given; the model loads at startup."""
    settings = settings or read_serve_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        state = ServerState(settings=settings)
        if model is not None:
            install(state, single_variant(settings.model_dir), {"AllTraffic": model})
        else:
            routing, models, state.load_error = load_endpoint(settings)
            if routing is not None:
                install(state, routing, models)
        if settings.capture.enabled:
            state.capture = CaptureWriter(
                settings.capture.destination,
                sampling_percentage=settings.capture.sampling_percentage,
                flush_interval_s=settings.capture.flush_interval_s,
            ).start()
        app.state.server = state
        stop_reloader = threading.Event()
        threading.Thread(target=keep_reloading, args=(state, stop_reloader), name="reloader", daemon=True).start()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # no signals off the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, state.reload_asked.set)
        try:
            yield
        finally:
            stop_reloader.set()
            if state.shadow_tasks:  # shadow answers in flight are captured before the capture writer closes
                await asyncio.gather(*list(state.shadow_tasks), return_exceptions=True)
            state.model_threads.shutdown(wait=True)
            if state.capture is not None:
                state.capture.close()  # everything buffered reaches the destination before exit

    return Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/variants", variants_report, methods=["GET"]),
            Route("/invocations", invocations, methods=["POST"]),
            Route("/endpoints/{endpoint_name}/invocations", runtime_invocations, methods=["POST"]),
            Route(
                ANY_ENDPOINT_PATH + "/endpoints/{endpoint_name}/invocations", any_endpoint_invocations, methods=["POST"]
            ),
        ],
        lifespan=lifespan,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local_model.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="model directory (or model.tar.gz); default from env")
    parser.add_argument("--host", help="address to bind; default 127.0.0.1 (the container passes 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to bind; default 8080")
    parser.add_argument("--no-access-log", action="store_true", help="do not log every request")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    args = parse_args(argv)
    try:
        settings = read_serve_settings()
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    settings = replace(
        settings,
        model_dir=args.model_dir or settings.model_dir,
        host=args.host or settings.host,
        port=settings.port if args.port is None else args.port,
    )
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.info("serving %s on http://%s:%d", settings.model_dir, settings.host, settings.port)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=not args.no_access_log,
        lifespan="on",
        timeout_graceful_shutdown=30,
        http=protocol_with_header_timeout(settings.header_timeout_s),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
