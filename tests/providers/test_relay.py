"""SseRelay: an OpenAI-wire stream relayed as the upstream's own bytes. Fed here by a fake
raw response that hands out the body in the reads given; through the hub over HTTP in
tests/api/test_openai_api.py (the relay's answers) and tests/test_fault_matrix.py (its
failures)."""

import asyncio
import time

import orjson
import pytest

from modelhub.providers.base import StreamEvent
from modelhub.providers.relay import SseRelay

UPSTREAM_ID, OUR_ID = "chatcmpl-up1", "chatcmpl-ours"
HANG = object()  # a read that does not come


class StreamError(Exception):
    def __init__(self, message, *, request, body):
        super().__init__(message)
        self.body = body


class FakeResponse:
    request = "the request"

    def __init__(self, reads: list[bytes]):
        self.reads, self.read = reads, 0
        self.closed = False

    async def aiter_bytes(self):
        for data in self.reads:
            self.read += 1
            if isinstance(data, Exception):
                raise data
            if data is HANG:
                await asyncio.sleep(30)
            yield data

    async def aclose(self):
        self.closed = True


def chunk(content=None, *, role=None, finish=None, usage=None, model="gpt-x", spaced=False) -> bytes:
    delta = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    body = {
        "id": UPSTREAM_ID,
        "object": "chat.completion.chunk",
        "model": model,
        "usage": usage,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [],
    }
    data = orjson.dumps(body)
    if spaced:  # Python's json.dumps layout, as some compatible hosts write it
        data = data.replace(b'":', b'": ').replace(b',"', b', "')
    return b"data: " + data + b"\n\n"


ANSWER = [
    chunk("", role="assistant"),
    chunk("1"),
    chunk(" 2"),
    chunk(" 3"),
    chunk(finish="stop"),
    chunk(usage={"prompt_tokens": 3, "completion_tokens": 3}),
    b"data: [DONE]\n\n",
]


def relay_items(reads: list[bytes], model_id="gpt-x"):
    async def collect():
        relay = SseRelay(FakeResponse(reads), model_id=model_id, relay_id=OUR_ID, stream_error=StreamError)
        items = []
        try:
            async for item in relay:
                items.append(item)
        except StreamError as exc:
            items.append(exc)
        return items, relay

    return asyncio.run(collect())


def relayed(items) -> bytes:
    return b"".join(i.raw for i in items if type(i) is StreamEvent)


def split_every(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


@pytest.mark.parametrize("size", [1, 2, 7, 64, 10_000])
def test_content_events_go_on_as_their_bytes_with_the_hubs_id_however_the_reads_split(size):
    items, _ = relay_items(split_every(b"".join(ANSWER), size))
    events = [i for i in items if type(i) is StreamEvent]
    assert "".join(e.text for e in events) == "1 2 3"
    assert sum(e.count for e in events) == 3
    expected = b"".join(ANSWER[:4]).replace(b'"id":"chatcmpl-up1"', b'"id":"chatcmpl-ours"')
    assert relayed(items) == expected
    assert UPSTREAM_ID.encode() not in relayed(items)
    # the end is parsed, for the hub to write: finish reason, then usage
    parsed = [i for i in items if type(i) is dict]
    assert [p["choices"][0]["finish_reason"] for p in parsed[:1]] == ["stop"]
    assert parsed[1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 3}
    assert type(items[0]) is StreamEvent  # the opening event went out with the first content


def test_a_model_the_upstream_names_otherwise_is_named_as_the_hub_names_it():
    body = [c.replace(b'"model":"gpt-x"', b'"model":"gpt-x-2026-01-01"') for c in ANSWER]
    items, _ = relay_items(body, model_id="gpt-x")
    assert b'"model":"gpt-x"' in relayed(items) and b"2026-01-01" not in relayed(items)


def test_crlf_line_ends_are_relayed_as_lf():
    body = b"".join(ANSWER).replace(b"\n", b"\r\n")
    items, _ = relay_items(split_every(body, 5))  # some reads end between CR and LF
    assert "".join(i.text for i in items if type(i) is StreamEvent) == "1 2 3"
    assert b"\r" not in relayed(items)


def test_an_upstream_without_the_compact_layout_is_parsed_not_relayed():
    body = [chunk("", role="assistant", spaced=True), chunk("1", spaced=True), chunk(finish="stop", spaced=True)]
    items, _ = relay_items(body)
    assert all(type(i) is dict for i in items)
    assert [i["choices"][0]["delta"].get("content") for i in items] == ["", "1", None]


def test_an_error_event_after_content_raises_after_the_content_went_out():
    error = b'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n'
    items, relay = relay_items([ANSWER[0] + ANSWER[1] + error + ANSWER[2]])
    assert relayed(items).count(b'"content":"1"') == 1
    assert isinstance(items[-1], StreamError) and items[-1].body["message"] == "overloaded"
    assert b" 2" not in relayed(items)


@pytest.mark.parametrize(
    "bad", [b'data: {"id": "x", tru\n\n', b"\xff\xfe not an event \xc3\x28\n\n"], ids=["json", "utf8"]
)
def test_a_malformed_event_fails_the_stream_after_what_came_before(bad):
    async def collect():
        relay = SseRelay(
            FakeResponse([ANSWER[0] + ANSWER[1] + bad]), model_id="gpt-x", relay_id=OUR_ID, stream_error=StreamError
        )
        got = []
        with pytest.raises(ValueError):
            async for item in relay:
                got.append(item)
        return got

    got = asyncio.run(collect())
    assert [g.text for g in got] == ["1"]


def test_done_ends_the_stream_and_the_rest_of_the_body_is_read_not_used():
    after = chunk("not for the client")
    items, relay = relay_items([b"".join(ANSWER[:5]), b"data: [DONE]\n\n" + after, b"", after])
    assert relay._response.read == 4  # read to its end, so that the connection can serve again
    assert b"not for the client" not in relayed(items)
    assert not any(type(i) is dict and "not for the client" in str(i) for i in items)


@pytest.mark.parametrize("after", [ConnectionResetError("reset"), HANG], ids=["reset", "silence"])
def test_a_reset_or_a_silence_after_done_leaves_the_answer_whole(after):
    """As the SDK: the rest of the body is waited for at most a moment, and nothing that
    happens to it turns a finished answer into a failure."""
    started = time.monotonic()
    items, _ = relay_items([b"".join(ANSWER), after])
    assert time.monotonic() - started < 5
    assert not any(isinstance(i, Exception) for i in items)
    assert "".join(i.text for i in items if type(i) is StreamEvent) == "1 2 3"
    assert items[-1]["usage"]["completion_tokens"] == 3


def test_opening_events_without_content_are_dropped_before_a_parsed_chunk():
    items, _ = relay_items([ANSWER[0] + chunk(finish="stop") + b"data: [DONE]\n\n"])
    assert [type(i) for i in items] == [dict]  # an empty answer: the hub writes its own opening


def test_comments_named_events_and_split_data_lines_are_read_as_the_sdk_reads_them():
    body = [
        b": keep-alive\n\n",
        ANSWER[0],
        b'event: message\ndata: {"id":"chatcmpl-up1","model":"gpt-x",\ndata: "choices":[{"index":0,'
        b'"delta":{"content":"A"},"finish_reason":null}]}\n\n',
        chunk("B"),
        chunk(finish="stop"),
    ]
    items, _ = relay_items(body)
    texts = [i.text if type(i) is StreamEvent else i["choices"][0]["delta"].get("content") for i in items]
    assert texts == ["A", "B", None]
    assert b"keep-alive" not in relayed(items)


def test_a_last_event_without_its_blank_line_is_dropped_as_the_sdk_drops_it():
    items, _ = relay_items([ANSWER[0] + ANSWER[1] + chunk(finish="length").rstrip(b"\n")])
    assert [type(i) for i in items] == [StreamEvent]  # no finish: the stream was cut short


def test_deltas_with_more_than_content_go_to_the_parser():
    """Reasoning text, a refusal or tool calls are the parser's to pass on or not: never
    relayed (nor held) as they came."""
    reasoning = chunk("").replace(b'"content":""', b'"content":null,"reasoning_content":"thinking"')
    items, _ = relay_items([ANSWER[0], reasoning, ANSWER[1], chunk(finish="stop")])
    assert b"thinking" not in relayed(items)
    assert [type(i) for i in items] == [dict, StreamEvent, dict]


def test_an_event_with_another_id_than_the_first_is_parsed_not_relayed_with_it():
    other = chunk(" 2").replace(b"chatcmpl-up1", b"chatcmpl-up2")
    items, _ = relay_items([ANSWER[0] + ANSWER[1] + other + chunk(finish="stop")])
    assert b"chatcmpl-up2" not in relayed(items)
    assert [type(i) for i in items] == [StreamEvent, dict, dict]


def test_json_the_standard_library_reads_is_read_where_orjson_is_stricter():
    nan = chunk("x").replace(b'"usage":null', b'"usage":null,"score":NaN')
    items, _ = relay_items([ANSWER[0], nan, chunk(finish="stop")])
    assert "".join(i.text for i in items if type(i) is StreamEvent) == "x"


@pytest.mark.parametrize(
    "base_url",
    [
        None,  # the SDK's default
        "https://api.openai.com/v1",
        "https://api.openai.com/v1/",
        "http://127.0.0.1:8311/openai/v1",
        "https://gateway.example.com:8443/a/b%20c/v1/",
        "https://host.example.com",
    ],
)
def test_the_completions_url_is_the_one_the_sdk_joins_for_a_relative_path(base_url):
    """The adapters hand the SDK an absolute URL (parsed once less per call); it must be
    the URL the SDK would have built from ``/chat/completions``."""
    import openai

    from modelhub.providers.openai import endpoint_url

    client = openai.AsyncOpenAI(api_key="sk-test", base_url=base_url)
    assert endpoint_url(client, "chat/completions") == str(client._prepare_url("/chat/completions"))
