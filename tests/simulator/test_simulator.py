"""The simulated upstream, driven by the real provider SDKs over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import aiohttp
import anthropic
import httpx2
import openai
import pytest
from django.core.management import CommandError, call_command
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from modelhub.management.commands.simupstream import env_lines, pace_option, parse_fault
from modelhub.simulator import Fault
from modelhub.simulator.pace import Pace, parse_pace
from modelhub.simulator.server import SimulatorServer

SYSTEM = "You are terse."
PROMPT = "Say hello to the world"
INPUT_TOKENS = 8  # words in SYSTEM + PROMPT
PROVIDERS = ["openai", "compat", "anthropic", "gemini"]
MODELS = {
    "openai": "gpt-4o-mini",
    "compat": "llama-3.1-8b-instant",
    "anthropic": "claude-haiku-4-5-20250514",
    "gemini": "gemini-2.5-flash",
}


@dataclass
class Outcome:
    text: str
    input_tokens: int
    output_tokens: int
    finish: str


class OpenAIClient:
    STOP, LENGTH = "stop", "length"
    dropped_stream = openai.APIConnectionError

    def __init__(self, server, kind="openai", key="sk-sim", timeout=5.0):
        self.sdk = openai.AsyncOpenAI(base_url=server.base_url(kind), api_key=key, max_retries=0, timeout=timeout)
        self.received: list[str] = []

    def _args(self, model, max_tokens, **extra):
        limit = {"max_completion_tokens": max_tokens} if max_tokens else {}
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
        return dict(model=model, messages=messages, **limit, **extra)

    async def complete(self, model, max_tokens=None) -> Outcome:
        response = await self.sdk.chat.completions.create(**self._args(model, max_tokens))
        choice, usage = response.choices[0], response.usage
        return Outcome(choice.message.content, usage.prompt_tokens, usage.completion_tokens, choice.finish_reason)

    async def stream(self, model, max_tokens=None) -> Outcome:
        self.received, finish, usage = [], None, None
        args = self._args(model, max_tokens, stream=True, stream_options={"include_usage": True})
        async for chunk in await self.sdk.chat.completions.create(**args):
            usage = chunk.usage or usage
            for choice in chunk.choices:
                self.received.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        return Outcome("".join(self.received), usage.prompt_tokens, usage.completion_tokens, finish)

    async def models(self) -> list[str]:
        return [model.id async for model in self.sdk.models.list()]

    async def close(self):
        await self.sdk.close()


class AnthropicClient:
    STOP, LENGTH = "end_turn", "max_tokens"
    dropped_stream = httpx2.TransportError  # the 2.x SDK does not wrap a stream cut mid-body

    def __init__(self, server, key="sk-ant-sim", timeout=5.0):
        self.sdk = anthropic.AsyncAnthropic(
            base_url=server.base_url("anthropic"), api_key=key, max_retries=0, timeout=timeout
        )
        self.received: list[str] = []

    def _args(self, model, max_tokens, **extra):
        return dict(
            model=model,
            max_tokens=max_tokens or 1024,
            system=SYSTEM,
            messages=[{"role": "user", "content": PROMPT}],
            **extra,
        )

    async def complete(self, model, max_tokens=None) -> Outcome:
        message = await self.sdk.messages.create(**self._args(model, max_tokens))
        usage = message.usage
        return Outcome(message.content[0].text, usage.input_tokens, usage.output_tokens, message.stop_reason)

    async def stream(self, model, max_tokens=None) -> Outcome:
        self.received, outcome = [], Outcome("", 0, 0, "")
        async for event in await self.sdk.messages.create(**self._args(model, max_tokens, stream=True)):
            if event.type == "message_start":
                outcome.input_tokens = event.message.usage.input_tokens
            elif event.type == "content_block_delta":
                self.received.append(event.delta.text)
            elif event.type == "message_delta":
                outcome.output_tokens, outcome.finish = event.usage.output_tokens, event.delta.stop_reason
        outcome.text = "".join(self.received)
        return outcome

    async def models(self) -> list[str]:
        return [model.id async for model in self.sdk.models.list()]

    async def close(self):
        await self.sdk.close()


class GeminiClient:
    STOP, LENGTH = "STOP", "MAX_TOKENS"
    dropped_stream = aiohttp.ClientPayloadError

    def __init__(self, server, key="gemini-sim", timeout=5.0):
        options = types.HttpOptions(
            base_url=server.base_url("google"), api_version="v1beta", timeout=int(timeout * 1000)
        )
        self.sdk = genai.Client(api_key=key, http_options=options)
        self.received: list[str] = []

    def _config(self, max_tokens):
        return types.GenerateContentConfig(system_instruction=SYSTEM, max_output_tokens=max_tokens)

    async def complete(self, model, max_tokens=None) -> Outcome:
        response = await self.sdk.aio.models.generate_content(
            model=model, contents=PROMPT, config=self._config(max_tokens)
        )
        return _gemini_outcome(response, response.text)

    async def stream(self, model, max_tokens=None) -> Outcome:
        self.received, last = [], None
        chunks = await self.sdk.aio.models.generate_content_stream(
            model=model, contents=PROMPT, config=self._config(max_tokens)
        )
        async for last in chunks:
            self.received.append(last.text or "")
        return _gemini_outcome(last, "".join(self.received))

    async def models(self) -> list[str]:
        return [model.name.removeprefix("models/") async for model in await self.sdk.aio.models.list()]

    async def close(self):
        await self.sdk.aio.aclose()


def _gemini_outcome(response, text) -> Outcome:
    usage = response.usage_metadata
    return Outcome(
        text, usage.prompt_token_count, usage.candidates_token_count, response.candidates[0].finish_reason.value
    )


CLIENTS = {
    "openai": OpenAIClient,
    "compat": lambda server, **options: OpenAIClient(server, kind="compat", **options),
    "anthropic": AnthropicClient,
    "gemini": GeminiClient,
}


@pytest.fixture
async def client_for(simulator):
    made = []

    def make(provider, **options):
        made.append(CLIENTS[provider](simulator, **options))
        return made[-1]

    yield make
    for client in made:
        await client.close()


def status_of(exc) -> int:
    return getattr(exc, "status_code", None) or exc.code


async def http(method, url, body=None, headers=None):
    data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
    async with aiohttp.ClientSession() as session, session.request(method, url, data=data, headers=headers) as response:
        return response.status, await response.json(content_type=None)


# -- successful answers --


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
async def test_answer_carries_text_tokens_and_finish(sim, client_for, provider, streamed):
    client, model = client_for(provider), MODELS[provider]
    outcome = await (client.stream(model) if streamed else client.complete(model))
    assert outcome == Outcome(f"Simulated reply from {model}.", INPUT_TOKENS, 4, client.STOP)
    assert sim.calls_for(model)[0].stream is streamed


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
async def test_max_tokens_truncates_with_length_finish(sim, client_for, provider, streamed):
    client, model = client_for(provider), MODELS[provider]
    outcome = await (client.stream(model, 2) if streamed else client.complete(model, 2))
    assert outcome == Outcome("Simulated reply", INPUT_TOKENS, 2, client.LENGTH)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_model_listing(sim, client_for, provider):
    assert await client_for(provider).models() == sim.listed_models[provider]


# -- paced answers --


def counting(n: int) -> str:
    return " ".join(str(i) for i in range(1, n + 1))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_paced_stream_sends_each_chunk_in_order(sim, client_for, provider):
    client, model = client_for(provider), MODELS[provider]
    sim.set_pace(model, chunks=12, interval_ms=5)
    outcome = await client.stream(model)
    assert outcome == Outcome(counting(12), INPUT_TOKENS, 12, client.STOP)
    assert [piece.strip() for piece in client.received if piece] == [str(i) for i in range(1, 13)]


async def test_paced_stream_writes_chunks_apart(sim, simulator):
    sim.set_pace("*", chunks=6, interval_ms=40)
    path, body = MINIMAL_REQUESTS["openai"]
    reads, started = [], time.monotonic()
    async with aiohttp.ClientSession() as session:
        headers = {"authorization": "Bearer k"}
        async with session.post(simulator.url + path, json={**body, "stream": True}, headers=headers) as response:
            async for data in response.content.iter_any():
                reads.append(data)
    assert b"".join(reads).count(b'"content":"') == 7  # the role chunk, then one a number
    assert len(reads) > 1  # not all in one write
    assert time.monotonic() - started >= 5 * 0.04  # the last chunk waits for its slot


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_paced_plain_answer_and_max_tokens(sim, client_for, provider):
    client, model = client_for(provider), MODELS[provider]
    sim.set_pace(model, Pace(20, 1))
    assert await client.complete(model) == Outcome(counting(20), INPUT_TOKENS, 20, client.STOP)
    assert await client.stream(model, 5) == Outcome(counting(5), INPUT_TOKENS, 5, client.LENGTH)


async def test_pace_of_a_model_wins_over_the_wildcard(sim, client_for):
    client = client_for("openai")
    sim.set_pace("*", chunks=3)
    sim.set_pace("gpt-4o", chunks=7, interval_ms=1)
    assert (await client.stream("gpt-4o")).text == counting(7)
    assert (await client.stream("gpt-4o-mini")).text == counting(3)
    sim.clear_paces("gpt-4o")
    assert (await client.stream("gpt-4o")).text == counting(3)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_paced_stream_cut_after_chunks(sim, client_for, provider):
    client, model = client_for(provider), MODELS[provider]
    sim.set_pace(model, chunks=10, interval_ms=2)
    sim.set_fault(model, cut_after_chunks=4)
    with pytest.raises(client.dropped_stream):
        await client.stream(model)
    assert "".join(client.received) == counting(4)


def test_pace_rejects_nonsense():
    for chunks, interval in [(0, 30), (True, 30), (1.5, 30), (50, -1), (50, "30")]:
        with pytest.raises(ValueError):
            Pace(chunks, interval)


# -- faults --


@pytest.mark.parametrize(
    "provider,status,error_class",
    [
        ("openai", 429, openai.RateLimitError),
        ("compat", 429, openai.RateLimitError),
        ("anthropic", 429, anthropic.RateLimitError),
        ("gemini", 429, genai_errors.ClientError),
        ("openai", 503, openai.InternalServerError),
        ("anthropic", 529, anthropic.OverloadedError),
        ("gemini", 503, genai_errors.ServerError),
        ("anthropic", 404, anthropic.NotFoundError),
        ("gemini", 404, genai_errors.ClientError),
    ],
)
async def test_fault_status_surfaces_as_sdk_error(sim, client_for, provider, status, error_class):
    sim.set_fault(MODELS[provider], Fault(status=status, retry_after=3))
    with pytest.raises(error_class) as caught:
        await client_for(provider).complete(MODELS[provider])
    assert status_of(caught.value) == status
    assert caught.value.response.headers["retry-after"] == "3"
    assert sim.calls[-1].status == status


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_fault_with_times_clears_itself(sim, client_for, provider):
    client, model = client_for(provider), MODELS[provider]
    sim.set_fault(model, status=500, times=1)
    with pytest.raises(Exception) as caught:
        await client.complete(model)
    assert status_of(caught.value) == 500
    assert (await client.complete(model)).finish == client.STOP
    assert [call.status for call in sim.calls_for(model)] == [500, 200]


@pytest.mark.parametrize(
    "provider,phrase",
    [
        ("openai", "context_length_exceeded"),
        ("anthropic", "prompt is too long: 200008 tokens > 200000 maximum"),
        ("gemini", "The input token count (1048584) exceeds the maximum number of tokens allowed (1048576)."),
    ],
)
async def test_context_length_fault_uses_the_providers_own_error(sim, client_for, provider, phrase):
    sim.set_fault(MODELS[provider], error="context_length")
    with pytest.raises(Exception) as caught:
        await client_for(provider).complete(MODELS[provider])
    assert status_of(caught.value) == 400
    assert phrase in str(caught.value) + str(getattr(caught.value, "code", ""))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_cut_stream_raises_after_the_first_chunks(sim, client_for, provider):
    client, model = client_for(provider), MODELS[provider]
    sim.set_fault(model, cut_after_chunks=2)
    with pytest.raises(client.dropped_stream):
        await client.stream(model)
    assert "".join(client.received) == "Simulated reply"


@pytest.mark.parametrize(
    "provider,error_class,attribute,value",
    [
        ("openai", openai.APIError, "type", "server_error"),
        ("compat", openai.APIError, "type", "server_error"),
        ("anthropic", anthropic.APIStatusError, "type", "overloaded_error"),
        ("gemini", genai_errors.ServerError, "code", 503),
    ],
)
async def test_error_event_mid_stream_surfaces(sim, client_for, provider, error_class, attribute, value):
    client, model = client_for(provider), MODELS[provider]
    sim.set_fault(model, error_event_after_chunks=2)
    with pytest.raises(error_class) as caught:
        await client.stream(model)
    assert getattr(caught.value, attribute) == value
    assert "".join(client.received) == "Simulated reply"


async def test_fault_rate_hits_a_share_of_the_calls(sim, client_for):
    client = client_for("openai")
    sim.set_fault("gpt-4o", status=500, rate=0.5)
    outcomes = []
    for _ in range(60):
        try:
            outcomes.append((await client.complete("gpt-4o")).finish)
        except openai.InternalServerError:
            outcomes.append(500)
    assert {"stop", 500} == set(outcomes)
    assert sim.statuses == {200: outcomes.count("stop"), 500: outcomes.count(500)}
    with pytest.raises(ValueError):
        Fault(status=500, rate=0)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_malformed_body_fails_to_parse(sim, client_for, provider):
    sim.set_fault(MODELS[provider], malformed=True)
    with pytest.raises((json.JSONDecodeError, genai_errors.UnknownApiResponseError)):
        await client_for(provider).complete(MODELS[provider])


async def test_latency_delays_the_answer(sim, client_for):
    sim.set_fault("gpt-4o-mini", latency_ms=150)
    started = time.monotonic()
    await client_for("openai").complete("gpt-4o-mini")
    assert time.monotonic() - started >= 0.15


async def test_hang_times_the_client_out_and_does_not_block_stop():
    server = SimulatorServer()
    server.start()
    server.sim.set_fault("gpt-4o-mini", hang=True)
    impatient, patient = OpenAIClient(server, timeout=0.3), OpenAIClient(server, timeout=30)
    with pytest.raises(openai.APITimeoutError):
        await impatient.complete("gpt-4o-mini")
    pending = asyncio.create_task(patient.complete("gpt-4o-mini"))
    while len(server.sim.calls) < 2:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await asyncio.to_thread(server.stop)
    assert time.monotonic() - started < 2
    with pytest.raises((openai.APIStatusError, openai.APIConnectionError)):
        await pending
    await impatient.close()
    await patient.close()


# -- call log and keys --


async def test_calls_record_the_request_bodies(sim, client_for):
    await client_for("openai").sdk.chat.completions.create(
        model="gpt-5-mini", messages=[{"role": "user", "content": PROMPT}], max_completion_tokens=50
    )
    await client_for("anthropic").sdk.messages.create(
        model="claude-haiku-4-5-20250514",
        max_tokens=50,
        system=SYSTEM,
        messages=[{"role": "user", "content": PROMPT}],
        extra_body={"temperature": 0.2},
    )
    await client_for("gemini").complete("gemini-2.5-pro", max_tokens=50)
    openai_call, anthropic_call, gemini_call = sim.calls
    assert openai_call.body["max_completion_tokens"] == 50 and "temperature" not in openai_call.body
    assert (openai_call.provider, openai_call.api_key, openai_call.path) == (
        "openai",
        "sk-sim",
        "/openai/v1/chat/completions",
    )
    assert anthropic_call.body["system"] == SYSTEM and anthropic_call.body["temperature"] == 0.2
    assert gemini_call.body["generationConfig"]["maxOutputTokens"] == 50
    assert gemini_call.body["systemInstruction"]["parts"] == [{"text": SYSTEM}]
    assert (gemini_call.model, gemini_call.api_key) == ("gemini-2.5-pro", "gemini-sim")


MINIMAL_REQUESTS = {
    "openai": ("/openai/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    "compat": ("/compat/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": "hi"}]}),
    "anthropic": (
        "/anthropic/v1/messages",
        {"model": "x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
    ),
    "gemini": ("/gemini/v1beta/models/x:generateContent", {"contents": [{"parts": [{"text": "hi"}]}]}),
}
ERROR_SHAPES = {  # provider -> (path into the error body, value for a 401)
    "openai": (("error", "code"), "invalid_api_key"),
    "compat": (("error", "code"), "invalid_api_key"),
    "anthropic": (("error", "type"), "authentication_error"),
    "gemini": (("error", "status"), "UNAUTHENTICATED"),
}


def dig(body, keys):
    for key in keys:
        body = body[key]
    return body


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_request_without_key_is_401_in_provider_shape(sim, simulator, provider):
    path, body = MINIMAL_REQUESTS[provider]
    status, answer = await http("POST", simulator.url + path, body)
    keys, value = ERROR_SHAPES[provider]
    assert (status, dig(answer, keys)) == (401, value)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_valid_keys_reject_other_keys(sim, client_for, provider):
    sim.valid_keys = {"the-right-key"}
    with pytest.raises(Exception) as caught:
        await client_for(provider, key="a-wrong-key").complete(MODELS[provider])
    assert status_of(caught.value) == 401
    assert (await client_for(provider, key="the-right-key").complete(MODELS[provider])).finish


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_invalid_json_is_400_in_provider_shape(sim, simulator, provider):
    path, _ = MINIMAL_REQUESTS[provider]
    headers = {"authorization": "Bearer k", "x-goog-api-key": "k"}
    status, answer = await http("POST", simulator.url + path, b"{not json", headers)
    assert status == 400 and "error" in answer


# -- control plane and command --


async def test_http_control_plane(sim, simulator):
    url = simulator.url + "/_sim"
    assert await http("GET", url + "/health") == (200, {"status": "ok"})
    assert (await http("POST", url + "/faults", {"model": "gpt-4o", "status": 429}))[0] == 200
    assert (await http("POST", url + "/faults", {"model": "gpt-4o", "status": "soon"}))[0] == 400
    assert sim.faults["gpt-4o"] == Fault(status=429)
    path, body = MINIMAL_REQUESTS["openai"]
    assert (await http("POST", simulator.url + path, body, {"authorization": "Bearer k"}))[0] == 429
    status, calls = await http("GET", url + "/calls")
    assert [(c["model"], c["status"]) for c in calls] == [("gpt-4o", 429)]
    assert (await http("DELETE", url + "/faults"))[0] == 200 and not sim.faults
    assert await http("GET", url + "/stats") == (200, {"calls": 1, "statuses": {"429": 1}})
    assert await http("POST", url + "/pace", {"model": "*", "chunks": 50, "interval_ms": 30}) == (
        200,
        {"model": "*", "chunks": 50, "interval_ms": 30},
    )
    assert (await http("POST", url + "/pace", {"model": "*", "chunks": 0}))[0] == 400
    assert await http("GET", url + "/pace") == (200, {"*": {"chunks": 50, "interval_ms": 30}})
    assert (await http("DELETE", url + "/pace"))[0] == 200 and not sim.paces
    assert (await http("POST", url + "/reset"))[0] == 200 and not sim.calls and not sim.statuses
    assert (await http("GET", simulator.url + "/nowhere"))[0] == 404


def test_simupstream_command_helpers():
    assert env_lines("127.0.0.1", 8900) == [
        "ANTHROPIC_BASE_URL=http://127.0.0.1:8900/anthropic",
        "OPENAI_BASE_URL=http://127.0.0.1:8900/openai/v1",
        "GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:8900/gemini",
        "GROQ_BASE_URL=http://127.0.0.1:8900/compat/v1",
    ]
    assert parse_fault("gpt-4o=429") == ("gpt-4o", Fault(status=429))
    assert parse_fault("claude-x=hang") == ("claude-x", Fault(hang=True))
    assert parse_fault("*=500@0.01") == ("*", Fault(status=500, rate=0.01))
    assert parse_pace("*=50x30") == ("*", Pace(50, 30))
    assert parse_pace("gpt-4o=5x0.5") == ("gpt-4o", Pace(5, 0.5))
    with pytest.raises(CommandError):
        parse_fault("gpt-4o=often")
    with pytest.raises(CommandError):
        parse_fault("gpt-4o=500@2")
    for bad in ("*=50", "50x30", "*=ax30", "*=0x30"):
        with pytest.raises(CommandError):
            pace_option(bad)
    with pytest.raises(CommandError, match="non-loopback"):
        call_command("simupstream", host="0.0.0.0")
