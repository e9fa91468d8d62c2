"""What validating a chat body costs, by message count: the hub's input serializers (one
field that checks the message list in one pass) beside a nested ``many=True`` message
serializer written the way DRF's documentation writes one.

    .venv/bin/python bench/serializers.py            # median µs per body, 1 and 50 messages
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pam.settings")

import django

django.setup()

from rest_framework import serializers  # noqa: E402

from modelhub.api.openai_views import CompletionInput  # noqa: E402
from modelhub.api.views import ChatInput  # noqa: E402


class NestedMessage(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant"])
    content = serializers.CharField()


class NestedCompletion(serializers.Serializer):
    model = serializers.CharField()
    messages = NestedMessage(many=True)
    max_tokens = serializers.IntegerField(min_value=1, required=False)
    stream = serializers.BooleanField(required=False, default=False)


def body(count: int) -> dict:
    roles = ("user", "assistant")
    messages = [{"role": roles[i % 2], "content": f"message {i} of the conversation so far"} for i in range(count)]
    messages[-1]["role"] = "user"
    return {"model": "pam", "messages": messages, "max_tokens": 64}


def median_us(serializer_class, data: dict, rounds: int = 3000) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def main() -> None:
    print("serializer              1 msg µs   50 msg µs   50 - 1")
    for name, serializer_class in (
        ("ChatInput (native)", ChatInput),
        ("CompletionInput (/v1)", CompletionInput),
        ("nested many=True", NestedCompletion),
    ):
        one, fifty = (median_us(serializer_class, body(n)) for n in (1, 50))
        print(f"{name:22} {one:9.1f} {fifty:11.1f} {fifty - one:8.1f}")


if __name__ == "__main__":
    main()
