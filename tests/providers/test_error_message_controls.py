"""Provider error messages lose their control characters: they end up in the ledger, and
PostgreSQL refuses a NUL in text (a row it refuses is set aside, not stored)."""

from modelhub.providers import errors


def test_control_characters_are_taken_out_of_provider_messages():
    message = errors.from_status(500, "bad\x00gateway\x01\x1b[0m said\tno\r\n").message

    assert message == "HTTP 500: bad gateway [0m said no"


def test_a_stream_error_event_loses_its_control_characters_too():
    message = errors.from_stream_error({"type": "api_error"}, "over\x00loaded\x07").message

    assert message == "stream error: over loaded"
