"""Response conversion on answers the simulator does not give: odd but well-formed ones."""

from types import SimpleNamespace

import pytest
from google.genai import types

from modelhub.providers import anthropic, google, openai
from modelhub.providers.base import ErrorKind, ProviderError

from .conftest import model_spec, provider_spec

RESULTS = {"openai": openai.chat_result, "anthropic": anthropic.message_result, "google": google.generate_result}


@pytest.mark.parametrize("kind", RESULTS)
@pytest.mark.parametrize("response", ["plain text body", SimpleNamespace(), None])
def test_response_missing_fields_is_server_error(kind, response):
    model = model_spec(provider_spec(kind))

    with pytest.raises(ProviderError) as caught:
        RESULTS[kind](response, model)

    assert caught.value.kind is ErrorKind.SERVER


def test_gemini_blocked_answer_is_empty_with_content_filter():
    response = types.GenerateContentResponse._from_response(
        response={"candidates": [{"finishReason": "SAFETY"}], "usageMetadata": {"promptTokenCount": 7}}, kwargs={}
    )

    result = google.generate_result(response, model_spec(provider_spec("google")))

    assert (result.text, result.finish_reason, result.input_tokens, result.output_tokens) == (
        "",
        "content_filter",
        7,
        0,
    )


def test_gemini_thinking_counts_as_output_but_not_as_text():
    response = types.GenerateContentResponse._from_response(
        response={
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [{"text": "pondering", "thought": True}, {"text": "Answer."}],
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "thoughtsTokenCount": 20},
        },
        kwargs={},
    )

    result = google.generate_result(response, model_spec(provider_spec("google")))

    assert (result.text, result.output_tokens) == ("Answer.", 21)


def test_anthropic_text_blocks_are_joined_and_others_skipped():
    message = SimpleNamespace(
        model="claude",
        stop_reason="end_turn",
        usage=SimpleNamespace(input_tokens=3, output_tokens=2),
        content=[
            SimpleNamespace(type="thinking", thinking="hmm"),
            SimpleNamespace(type="text", text="A"),
            SimpleNamespace(type="text", text="B"),
        ],
    )

    result = anthropic.message_result(message, model_spec(provider_spec("anthropic")))

    assert (result.text, result.finish_reason) == ("AB", "stop")
