"""The built-in simulated upstream: OpenAI, Anthropic and Gemini wire formats with injectable faults."""

from .app import Call, Fault, Simulator

__all__ = ["Call", "Fault", "Simulator"]
