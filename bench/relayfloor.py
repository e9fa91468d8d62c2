"""The floor under the hub's CPU per relayed chunk: a bare ASGI app that forwards a chat
stream's bytes from the upstream to the client as they arrive (aiohttp in, uvicorn out; no
Django, no SDK, no parsing). What the hub spends above it is parsing and re-serialising.

    .venv/bin/python manage.py simupstream --port 8411 --pace '*=50x30' &
    taskset -c 0 .venv/bin/python bench/relayfloor.py --port 8410 --upstream http://127.0.0.1:8411 &
    .venv/bin/python bench/load.py --target http://127.0.0.1:8410 --key x --hub-pid <its pid>"""

from __future__ import annotations

import argparse

import aiohttp
import uvicorn

UPSTREAM_PATH = "/openai/v1/chat/completions"
SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
# What the hub asks its upstream for (the usage chunk included): the same bytes to relay.
BODY = (
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Count for me"}], "stream": true,'
    b' "stream_options": {"include_usage": true}}'
)


def relay_app(upstream: str):
    sessions: list[aiohttp.ClientSession] = []

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if not sessions:
            sessions.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)))
        headers = {"Authorization": "Bearer sim", "Content-Type": "application/json"}
        async with sessions[0].post(upstream + UPSTREAM_PATH, data=BODY, headers=headers) as response:
            await send({"type": "http.response.start", "status": response.status, "headers": SSE})
            async for data in response.content.iter_any():
                await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8410)
    parser.add_argument("--upstream", default="http://127.0.0.1:8411")
    args = parser.parse_args()
    uvicorn.run(relay_app(args.upstream), port=args.port, log_level="warning", access_log=False, backlog=8192)
