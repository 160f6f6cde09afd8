"""The model server under stress (issue 14's reproductions), measured on a real server process:

1. memory: a burst of the largest images the server accepts (2048x2048 RGBA PNGs, 16 MB decoded), 64 at
   concurrency 16: the server's RSS before, at its peak, and 3 s after;
2. event loop: 8 clients sending small PNGs that declare 2048x2048 pixels, while a ninth times `/ping`:
   its p50 and p99 during the burst against idle;
3. capture: a burst of 64 bodies of 5.9 MB at concurrency 16 with capture on: requests answered 200 against
   records captured and records counted as dropped on `/ping`;
4. slow clients: a connection that sends half its headers, and one that sends half its body, then waits:
   how long until the server closes each;
5. a 10 MB body with `Connection: close`: a 413 with a JSON body, or a reset connection.

    python benchmarks/serve_stress.py [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_latency import build_untrained_model

from local_model.capture_reader import read_captured_inferences
from scones.local.model_server import ModelServer
from scones.monitoring.report import percentile

BIG_SIDE = 2048  # the default pixel limit is 2048x2048
SLOW_CLIENT_WAIT_S = 30.0


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def big_png(seed: int) -> bytes:
    """A 2048x2048 RGBA PNG of smooth content: small on the wire, 16 MB once decoded."""
    ramp = np.linspace(0, 255, BIG_SIDE, dtype=np.float32)
    pixels = np.empty((BIG_SIDE, BIG_SIDE, 4), dtype=np.uint8)
    pixels[..., 0] = ramp[None, :]
    pixels[..., 1] = ramp[:, None]
    pixels[..., 2] = (seed * 37) % 256
    pixels[..., 3] = 255
    return png(pixels)


def post(url: str, body: bytes, headers: dict | None = None, timeout: float = 120) -> int:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("POST", "/invocations", body=body, headers={"Content-Type": "image/png", **(headers or {})})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def ping_ms(url: str) -> float:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    started = time.perf_counter()
    try:
        connection.request("GET", "/ping")
        connection.getresponse().read()
    finally:
        connection.close()
    return (time.perf_counter() - started) * 1000


def ping_body(url: str) -> dict:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", "/ping")
        return json.loads(connection.getresponse().read() or b"{}")
    finally:
        connection.close()


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def memory_burst(server: ModelServer, requests: int, concurrency: int) -> dict:
    bodies = [big_png(seed) for seed in range(8)]
    for body in bodies[:2]:
        post(server.url, body)  # warm: the first large decode allocates what later ones reuse
    time.sleep(1)
    before = rss_mb(server.pid)
    peak, done = [before], threading.Event()

    def sample():
        while not done.is_set():
            peak.append(rss_mb(server.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(lambda i: post(server.url, bodies[i % len(bodies)]), range(requests)))
    done.set()
    sampler.join()
    time.sleep(3)
    after = rss_mb(server.pid)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "body_bytes": len(bodies[0]),
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(max(peak), 1),
        "rss_after_3s_mb": round(after, 1),
        "after_vs_before": round(after / before, 3),
    }


def event_loop_burst(server: ModelServer, clients: int, seconds: float) -> dict:
    # A small PNG that declares 2048x2048 pixels: cheap to send, costly to decode.
    body = big_png(1)
    idle = [ping_ms(server.url) for _ in range(50)]
    stop = threading.Event()
    sent = [0]

    def client():
        while not stop.is_set():
            post(server.url, body)
            sent[0] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    during, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        during.append(ping_ms(server.url))
        time.sleep(0.02)
    stop.set()
    for thread in threads:
        thread.join()
    return {
        "clients": clients,
        "body_bytes": len(body),
        "requests_sent": sent[0],
        "ping_idle_p50_ms": round(percentile(idle, 50), 2),
        "ping_during_p50_ms": round(percentile(during, 50), 2),
        "ping_during_p99_ms": round(percentile(during, 99), 2),
        "pings": len(during),
    }


def capture_burst(server: ModelServer, captures: Path, requests: int, concurrency: int) -> dict:
    rng = np.random.default_rng(0)
    # ~5.9 MB: random pixels do not compress, so the PNG is about the raw size.
    side = 1400
    body = png(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    with ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(lambda _: post(server.url, body), range(requests)))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (ping_body(server.url).get("capture") or {}).get("records_buffered", 0):
        time.sleep(0.2)
    capture = ping_body(server.url).get("capture") or {}
    captured = sum(1 for record in read_captured_inferences(captures) if record.input_body == body)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "body_bytes": len(body),
        "answered_200": statuses.count(200),
        "captured": captured,
        "ping_capture": capture,
    }


def seconds_until_closed(url: str, payload: bytes) -> float | None:
    """Send `payload` (a partial request), then wait: seconds until the server closes, None if it never does."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=SLOW_CLIENT_WAIT_S + 5) as sock:
        sock.sendall(payload)
        started = time.monotonic()
        sock.settimeout(SLOW_CLIENT_WAIT_S)
        try:
            while sock.recv(65536):
                pass  # an error response may come before the close
        except TimeoutError:
            return None
        except ConnectionResetError:
            pass
        return round(time.monotonic() - started, 2)


def slow_clients(server: ModelServer) -> dict:
    half_headers = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
    half_body = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n" + bytes(500)
    )
    return {
        "half_headers_closed_after_s": seconds_until_closed(server.url, half_headers),
        "half_body_closed_after_s": seconds_until_closed(server.url, half_body),
    }


def close_connection_413(server: ModelServer) -> dict:
    body = bytes(10 * 2**20)
    try:
        host, port = server.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        connection.request(
            "POST", "/invocations", body=body, headers={"Content-Type": "image/png", "Connection": "close"}
        )
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        return {"status": response.status, "json": json.loads(payload).get("error") if payload else None}
    except (ConnectionResetError, BrokenPipeError, http.client.HTTPException) as e:
        return {"status": None, "error": type(e).__name__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = build_untrained_model(Path(scratch) / "model")
        captures = Path(scratch) / "captures"
        env = {"SCONES_LOG_LEVEL": "warning"}
        server = ModelServer(model_dir, env=env, capture_destination=str(captures), extra_args=["--no-access-log"])
        with server:
            results = {"memory": memory_burst(server, requests=64, concurrency=16)}
            print("memory      ", json.dumps(results["memory"]), flush=True)
            results["event_loop"] = event_loop_burst(server, clients=8, seconds=5)
            print("event loop  ", json.dumps(results["event_loop"]), flush=True)
            results["capture"] = capture_burst(server, captures, requests=64, concurrency=16)
            print("capture     ", json.dumps(results["capture"]), flush=True)
            results["slow_clients"] = slow_clients(server)
            print("slow clients", json.dumps(results["slow_clients"]), flush=True)
            results["close_413"] = close_connection_413(server)
            print("413 close   ", json.dumps(results["close_413"]), flush=True)
    results["load_average"] = {"before": load_before[0], "after": os.getloadavg()[0]}
    print(f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after (1-minute; 2 shared cores)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
