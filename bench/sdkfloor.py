"""The floor under the hub's opening of a stream with the parts the project requires, less
Django: uvicorn in, the official openai SDK on its aiohttp transport out (``DefaultAioHttpClient``,
the raw streamed response the hub's relay also reads), the upstream's bytes forwarded as they
arrive. No Django, no DRF, no key, no routing, no ledger. ``bench/relayfloor.py`` is the same
without the SDK (aiohttp alone); the hub is this plus Django/DRF and its own work.

    .venv/bin/python bench/load.py --floor sdk          # started in the hub's place
    .venv/bin/python bench/sdkfloor.py --port 8410 --upstream http://127.0.0.1:8411/openai/v1"""

from __future__ import annotations

import argparse
import gc

import httpx2
import openai
import uvicorn

SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
PARAMS = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Count for me"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}
RAW_STREAM = {"X-Stainless-Raw-Response": "stream"}  # the SDK's with_streaming_response switch


def sdk_app(base_url: str):
    clients: list[openai.AsyncOpenAI] = []  # made inside the running loop, on first use
    url = base_url.rstrip("/") + "/chat/completions"  # absolute: the SDK parses it less (as the hub does)

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if not clients:
            clients.append(
                openai.AsyncOpenAI(
                    api_key="sim", base_url=base_url, max_retries=0, http_client=openai.DefaultAioHttpClient()
                )
            )
        response = await clients[0].post(
            url, cast_to=httpx2.Response, body=PARAMS, stream=True, options={"headers": RAW_STREAM}
        )
        try:
            await send({"type": "http.response.start", "status": response.status_code, "headers": SSE})
            async for data in response.aiter_bytes():
                await send({"type": "http.response.body", "body": data, "more_body": True})
        finally:
            await response.aclose()
        await send({"type": "http.response.body", "body": b""})

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8410)
    parser.add_argument("--upstream", default="http://127.0.0.1:8411/openai/v1", help="the SDK's base URL")
    args = parser.parse_args()
    gc.disable()  # a floor: no collector at all (the hub holds its own back under load)
    uvicorn.run(sdk_app(args.upstream), port=args.port, log_level="warning", access_log=False, backlog=8192)
