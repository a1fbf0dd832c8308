"""The explorer under load: 16 clients at once, 30% of their requests malformed.

Starts ``convlens serve``'s app in this process (uvicorn on a free port, in a thread;
PyTorch on 1 thread, as the command does), then 16 client threads, each on its own
keep-alive connection, send ``--requests`` requests each, as fast as answers come:

* 70% good: ``POST /api/traces`` of the toy network on the cat (the page's starting
  network, 300x451, a random seed: a real capture every time) or, one in four, a stage's
  channels of a held trace (``GET .../channels``);
* 30% malformed, in turn: a body that is not JSON, an unknown stage, huge numbers (a
  seed of 10**30, a 4096-filter 64x64 convolution) and bytes that are not an image.

Reports p50 / p99 / max latency (all answers, and the good requests alone), the
answers by status, the 503s (and that each carried ``Retry-After``; a client waits that
long before its next request, unless ``--no-wait``), the good answers per second, and
the peak RSS of the process (server and clients) and what it held before the load.
Usage::

    python bench/server_load.py [--requests 40] [--clients 16] [--workers W --queue Q]
                                [--json out.json]
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

BAD_IMAGE = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n"
             b"Content-Type: image/png\r\n\r\n" + b"\x89PNG not really" * 64 + b"\r\n--XyZ--\r\n")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(-(-q * len(xs) // 100)) - 1))] if xs else 0.0


def request(conn: http.client.HTTPConnection, kind: str, rng: random.Random, tid: str):
    """Send one request of ``kind``; returns (status, has Retry-After)."""
    js = {"Content-Type": "application/json"}
    if kind == "trace":
        body = json.dumps({"image": "cat", "model": "toy", "seed": rng.randrange(1000)})
        conn.request("POST", "/api/traces", body, js)
    elif kind == "channels":
        conn.request("GET", f"/api/traces/{tid}/stages/{rng.randrange(6)}/channels?count=3")
    elif kind == "bad-json":
        conn.request("POST", "/api/traces", b'{"image": "cat", "seed": ', js)
    elif kind == "bad-stage":
        conn.request("GET", f"/api/traces/{tid}/stages/9999/channels")
    elif kind == "huge":
        body = ({"image": "cat", "seed": 10**30} if rng.random() < 0.5 else
                {"image": "cat", "model": "toy", "spec": "conv(4096, 64x64) relu"})
        conn.request("POST", "/api/traces", json.dumps(body), js)
    elif kind == "bad-image":
        conn.request("POST", "/api/images", BAD_IMAGE,
                     {"Content-Type": "multipart/form-data; boundary=XyZ"})
    r = conn.getresponse()
    r.read()
    return r.status, r.getheader("Retry-After")


MALFORMED = ("bad-json", "bad-stage", "huge", "bad-image")


def run(clients: int, per_client: int, workers: int | None, queue: int | None,
        seed: int = 0, wait_retry: bool = True) -> dict:
    import torch
    from convlens.server import create_app
    from convlens.server.background import BackgroundServer

    threads = torch.get_num_threads()
    kwargs = {} if workers is None else {"workers": workers, "queue": queue}
    app = create_app(torch_threads=1, **kwargs)
    results: list[tuple[str, int, float, bool]] = []
    lock = threading.Lock()
    with BackgroundServer(app) as url:
        host, port = url.split("//")[1].strip("/").split(":")
        warm = http.client.HTTPConnection(host, int(port), timeout=60)
        warm.request("POST", "/api/traces", json.dumps({"image": "cat", "model": "toy"}),
                     {"Content-Type": "application/json"})
        r = warm.getresponse()
        frame = r.read()
        n = int.from_bytes(frame[4:8], "little")
        tid = json.loads(frame[8:8 + n])["trace"]["id"]
        for _ in range(3):  # warm the capture path
            request(warm, "trace", random.Random(1), tid)
        base = rss_mb()
        peak = [base]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_mb())
                time.sleep(0.01)

        def client(k: int):
            rng = random.Random(seed * 1000 + k)
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            mine = []
            for j in range(per_client):
                if rng.random() < 0.3:
                    kind = MALFORMED[(k + j) % len(MALFORMED)]
                else:
                    kind = "channels" if rng.random() < 0.25 else "trace"
                t0 = time.perf_counter()
                try:
                    status, retry = request(conn, kind, rng, tid)
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=60)
                    status, retry = 0, None
                mine.append((kind, status, (time.perf_counter() - t0) * 1000,
                             retry is not None))
                if status == 503 and retry and wait_retry:  # as a polite client does
                    time.sleep(float(retry))
            conn.close()
            with lock:
                results.extend(mine)

        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        t0 = time.perf_counter()
        pool = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        wall = time.perf_counter() - t0
        done.set()
        watcher.join()
    torch.set_num_threads(threads)
    lat = [ms for _, _, ms, _ in results]
    good = [ms for kind, st, ms, _ in results if kind in ("trace", "channels") and st == 200]
    busy = [r for r in results if r[1] == 503]
    return {
        "clients": clients, "requests": len(results), "wall_s": round(wall, 2),
        "good_per_s": round(len(good) / wall, 1),
        "workers": workers, "queue": queue,
        "p50_ms": round(statistics.median(lat), 1), "p99_ms": round(pct(lat, 99), 1),
        "max_ms": round(max(lat), 1),
        "good_200": len(good), "good_p50_ms": round(statistics.median(good), 1) if good else None,
        "good_p99_ms": round(pct(good, 99), 1) if good else None,
        "status": dict(sorted(Counter(str(st) for _, st, _, _ in results).items())),
        "503": len(busy), "503_with_retry_after": sum(r[3] for r in busy),
        "rss_before_mb": round(base, 1), "rss_peak_mb": round(peak[0], 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=40, help="per client (default 40)")
    ap.add_argument("--workers", type=int, default=None, help="the app's worker pool "
                    "(default: create_app's)")
    ap.add_argument("--queue", type=int, default=None, help="the app's queue (with --workers)")
    ap.add_argument("--no-wait", action="store_true", help="after a 503, ask again at once "
                    "(default: wait Retry-After seconds, as a polite client does)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    row = run(args.clients, args.requests, args.workers, args.queue,
              wait_retry=not args.no_wait)
    print(json.dumps(row, indent=1))
    if args.json:
        args.json.write_text(json.dumps(row, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
