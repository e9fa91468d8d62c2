"""history_fit: the earlier turns a model gets, the latest that fit its context window
beside the request itself; the oldest dropped first, a kept history never starting with an
answer; a stored history mended so that a provider takes it."""

from decimal import Decimal

from modelhub.conversations import history_fit, history_mended, message_tokens, text_tokens
from modelhub.providers.base import ChatRequest, Image, Message, ModelSpec, ProviderSpec, Tool, ToolCall

PROVIDER = ProviderSpec("sim", "openai", None, "SIM_KEY", None, 5.0)


def model(window: int, max_output: int = 100) -> ModelSpec:
    return ModelSpec(1, "m", "m", PROVIDER, window, max_output, Decimal(1), Decimal(1))


def turns(count: int, words: int = 40) -> tuple[Message, ...]:
    """``count`` question/answer pairs, each message ~``words`` words; turn i says "q{i}" / "a{i}"."""
    pad = " lorem" * words
    history: list[Message] = []
    for i in range(count):
        history += [Message("user", f"q{i}{pad}"), Message("assistant", f"a{i}{pad}")]
    return tuple(history)


NEW = ChatRequest(messages=(Message("user", "and now?"),), max_tokens=100)


def kept(request: ChatRequest) -> list[str]:
    return [m.content.split(" ")[0] for m in request.messages]


def test_small_window_gets_fewer_earlier_turns_than_a_big_one_oldest_dropped_first():
    history = turns(10)
    per_message = message_tokens(history[0])
    small = history_fit(history, NEW, model(window=100 + 20 + 4 * per_message))
    big = history_fit(history, NEW, model(window=100_000))

    assert kept(big) == [f"{r}{i}" for i in range(10) for r in "qa"] + ["and"]
    assert kept(small) == ["q8", "a8", "q9", "a9", "and"]


def test_the_request_always_goes_whole_and_last():
    fitted = history_fit(turns(3), NEW, model(window=10_000))
    assert fitted.messages[-1] == NEW.messages[0]
    assert (fitted.max_tokens, fitted.system) == (NEW.max_tokens, NEW.system)


def test_no_room_left_sends_the_request_alone():
    assert history_fit(turns(3), NEW, model(window=120)) is NEW


def test_a_kept_history_starts_with_a_question_not_an_answer():
    history = turns(4)
    per_message = message_tokens(history[0])
    # room for three messages: a1 would lead, without the q1 that asked for it
    fitted = history_fit(history, NEW, model(window=100 + 20 + 3 * per_message))
    assert kept(fitted) == ["q3", "a3", "and"]


def test_the_output_allowance_system_prompt_and_tools_take_room_first():
    history = turns(4)
    per_message = message_tokens(history[0])
    window = 100 + 20 + 4 * per_message
    assert kept(history_fit(history, NEW, model(window))) == ["q2", "a2", "q3", "a3", "and"]

    with_system = ChatRequest(messages=NEW.messages, max_tokens=100, system="x" * 4 * per_message)
    assert kept(history_fit(history, with_system, model(window))) == ["q3", "a3", "and"]

    tool = Tool("lookup", "d" * 4 * per_message, {"type": "object"})
    with_tools = ChatRequest(messages=NEW.messages, max_tokens=100, tools=(tool,))
    assert kept(history_fit(history, with_tools, model(window))) == ["q3", "a3", "and"]

    asks_more = ChatRequest(messages=NEW.messages, max_tokens=100 + 2 * per_message)
    assert kept(history_fit(history, asks_more, model(window, max_output=10_000))) == ["q3", "a3", "and"]


def test_an_image_in_the_request_counts_against_the_window():
    history = turns(2, words=2)
    image = Image("data:image/png;base64,AAAA", "image/png", "AAAA")
    with_image = ChatRequest(messages=(Message("user", "this?", images=(image,)),), max_tokens=100)
    assert kept(history_fit(history, NEW, model(window=700))) == ["q0", "a0", "q1", "a1", "and"]
    assert history_fit(history, with_image, model(window=700)) is with_image


def test_text_beyond_ascii_counts_a_token_a_character():
    assert text_tokens("a" * 400) == 100
    assert text_tokens("字" * 400) == 400  # four a token would let it overflow the window fourfold
    assert text_tokens("ab字") == 2


def test_a_stored_history_is_mended_so_that_a_provider_takes_it():
    call, other = ToolCall("c1", "lookup", '{"q": 1}'), ToolCall("c2", "clock", "{}")
    stored = [
        Message("user", "weather?"),
        Message("assistant", "", tool_calls=(call, other)),
        Message("tool", "sunny", tool_call_id="c1", name="lookup"),
        Message("user", "never mind"),
        Message("assistant", "Let me check.", tool_calls=(other,)),
        Message("user", "thanks"),
        Message("assistant", "", tool_calls=(other,)),
        Message("tool", "orphan", tool_call_id="c9", name="clock"),
        Message("user", "still there?"),
        Message("assistant", ""),  # its client left before a word of it was relayed
    ]

    mended = history_mended(stored)

    assert mended == (
        Message("user", "weather?"),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "sunny", tool_call_id="c1", name="lookup"),
        Message("user", "never mind"),
        Message("assistant", "Let me check."),
        Message("user", "thanks"),
        Message("user", "still there?"),
    )
