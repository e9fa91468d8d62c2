"""Time to first token of streamed chat requests: N serial requests against one URL, each
timed from sending the request to the first SSE event that carries content; prints p50/p90.

    .venv/bin/python bench/ttft.py http://127.0.0.1:8000/v1/chat/completions --key $KEY --model pam
    .venv/bin/python bench/ttft.py http://127.0.0.1:8000/api/v1/pam/chat --key $KEY --native
    .venv/bin/python bench/ttft.py http://127.0.0.1:4000/v1/chat/completions --key sk-bench-... --model good-model

Compare the hub with LiteLLM and the stack floor on the same upstream: the difference is
the TTFT each adds. Standard library only, one keep-alive connection."""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
from urllib.parse import urlsplit


def first_content(response) -> bool:
    """Read SSE lines until one carries content; False if the stream ends without any."""
    for raw in response:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return False
        try:
            event = json.loads(data)
        except ValueError:
            continue
        if event.get("content") or any((c.get("delta") or {}).get("content") for c in event.get("choices") or ()):
            return True
    return False


def one(conn, path: str, body: bytes, headers: dict) -> float:
    started = time.perf_counter()
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"HTTP {response.status}: {response.read()[:300]!r}")
    found = first_content(response)
    elapsed = time.perf_counter() - started
    response.read()  # drain, so that the connection is reused
    if not found:
        raise SystemExit("the stream carried no content")
    return elapsed * 1000


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("-n", type=int, default=200, help="serial requests (default 200)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--key", default="", help="sent as Authorization: Bearer KEY")
    parser.add_argument("--model", default="pam", help="model (OpenAI body) or route (--native)")
    parser.add_argument("--native", action="store_true", help="body for /api/v1/pam/chat")
    parser.add_argument("--prompt", default="Say hello")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args(argv)

    parts = urlsplit(args.url)
    if args.native:
        body = {"message": args.prompt, "route": args.model, "max_tokens": args.max_tokens, "stream": True}
    else:
        body = {
            "model": args.model,
            "messages": [{"role": "user", "content": args.prompt}],
            "max_tokens": args.max_tokens,
            "stream": True,
        }
    headers = {"Content-Type": "application/json"}
    if args.key:
        headers["Authorization"] = f"Bearer {args.key}"
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(parts.hostname, parts.port, timeout=60)
    path, raw = parts.path + (f"?{parts.query}" if parts.query else ""), json.dumps(body).encode()
    for _ in range(args.warmup):
        one(conn, path, raw, headers)
    times = [one(conn, path, raw, headers) for _ in range(args.n)]
    print(
        f"TTFT url={args.url} n={args.n} p50_ms={percentile(times, 0.5):.2f} "
        f"p90_ms={percentile(times, 0.9):.2f} mean_ms={statistics.fmean(times):.2f} "
        f"min_ms={min(times):.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
