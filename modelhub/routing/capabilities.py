"""What a request needs of a model, worked out once before any call, and whether a model
of the chain can serve it. A model that cannot is skipped without a call (its attempt says
why); a request that no model of the chain can serve is the caller's 400."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from ..providers.base import ChatRequest, ModelSpec

# Providers that fetch an https image URL themselves; the hub never fetches one.
IMAGE_URL_KINDS = frozenset({"openai", "anthropic"})
# Image types a provider refuses (Gemini: no GIF), beyond the four the API layer takes.
IMAGE_TYPES_REFUSED = {"google": frozenset({"image/gif"})}
# A rough count for an image in the context window (providers charge ~85-1,600 tokens).
IMAGE_TOKENS = 1_000


@dataclass(frozen=True, slots=True)
class Needs:
    tools: bool = False
    images: bool = False
    image_urls: bool = False
    json_schema: bool = False
    tokens: int = 0  # the input's estimate plus the output asked for
    image_types: frozenset[str] = frozenset()  # of the inline images

    def unmet(self, model: ModelSpec) -> str | None:
        """Why ``model`` cannot serve the request, or None."""
        if self.tools and not model.supports_tools:
            return "no tool support"
        if self.images and not model.supports_vision:
            return "no vision support"
        if self.image_urls and model.provider.kind not in IMAGE_URL_KINDS:
            return "does not fetch image URLs"
        refused = self.image_types & IMAGE_TYPES_REFUSED.get(model.provider.kind, frozenset())
        if refused:
            return f"does not take {', '.join(sorted(refused))}"
        if self.json_schema and not model.supports_json_schema:
            return "no JSON schema support"
        if self.tokens > model.context_window:
            return f"context window {model.context_window} below the request's ~{self.tokens} tokens"
        return None

    def described(self) -> str:
        """What the request needs, for the 400 that no model could serve it."""
        wants = [
            name
            for name, wanted in (
                ("tool calling", self.tools),
                ("image input", self.images),
                ("image URLs fetched by the provider", self.image_urls),
                ("JSON schema output", self.json_schema),
            )
            if wanted
        ]
        wants.append(f"a context window of ~{self.tokens} tokens")
        return ", ".join(wants)


def needs_of(request: ChatRequest) -> Needs:
    """The request's needs. Tokens: ~4 characters a token for text and tool schemas (no
    tokenizer here: an estimate, so a model is skipped only when it surely cannot fit),
    a fixed count per image, plus the caller's max_tokens."""
    chars = len(request.system or "")
    images = image_urls = 0
    image_types: set[str] = set()
    tool_history = False
    for message in request.messages:
        chars += len(message.content)
        if message.tool_calls or message.role == "tool":
            tool_history = True
            chars += sum(len(call.arguments) for call in message.tool_calls)
        for image in message.images:
            images += 1
            image_urls += not image.inline
            if image.media_type:
                image_types.add(image.media_type)
    if request.tools:
        chars += sum(len(t.name) + len(t.description) + len(orjson.dumps(t.parameters)) for t in request.tools)
    format_ = request.response_format
    return Needs(
        tools=bool(request.tools) or tool_history,  # a conversation with tool turns needs them too
        images=images > 0,
        image_urls=image_urls > 0,
        json_schema=format_ is not None and format_.type == "json_schema",
        tokens=chars // 4 + images * IMAGE_TOKENS + (request.max_tokens or 0),
        image_types=frozenset(image_types),
    )
