"""The chat endpoints as DRF serves them: OPTIONS, the OpenAPI schema and its docs page,
JSON 404s under the API's prefixes, and the per-key throttle."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

API_PREFIXES = ("api/", "v1/")


@pytest.mark.parametrize(
    "path, fields",
    [
        ("/api/v1/pam/chat", {"message", "messages", "route", "model", "stream", "max_tokens", "conversation_id"}),
        ("/v1/chat/completions", {"model", "messages", "max_tokens", "max_completion_tokens", "stream"}),
    ],
)
def test_options_describes_the_endpoint_and_its_input(pam, sim, path, fields):
    response = pam.client.options(path)
    body = response.json()
    assert response.status_code == 200
    assert set(body["actions"]["POST"]) >= fields
    assert body["actions"]["POST"]["messages"]["required"] is (path == "/v1/chat/completions")
    assert body["parses"][0] == "application/json" and body["renders"] == ["application/json"]
    assert "POST" in response["Allow"] and sim.calls == []


def test_schema_is_valid_openapi_3(client, db):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    schema = response.json()
    assert response.status_code == 200 and schema["openapi"].startswith("3.")
    validate_schema(schema)


def _api_paths(patterns=None, prefix="") -> set[str]:
    found = set()
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            found |= _api_paths(entry.url_patterns, route)
        elif isinstance(entry, URLPattern) and route.startswith(API_PREFIXES):
            found.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))  # as the schema writes parameters
    return found


def test_every_api_url_is_in_the_schema(client, db):
    documented = set(client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"])
    served = _api_paths() - {"/api/schema/", "/api/docs/"}
    assert {"/api/v1/pam/chat", "/v1/chat/completions", "/v1/models", "/api/v1/health"} <= served
    assert served - documented == set()


def test_schema_documents_bodies_answers_errors_and_streams(client, db):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    chat = paths["/api/v1/pam/chat"]["post"]
    assert "application/json" in chat["requestBody"]["content"]
    answer = chat["responses"]["200"]["content"]
    assert {"application/json", "text/event-stream"} <= set(answer)
    assert "event: done" in chat["responses"]["200"]["description"] or "event: done" in str(answer)
    assert {"400", "401", "403", "404", "429", "503", "504"} <= set(chat["responses"])
    completions = paths["/v1/chat/completions"]["post"]
    assert "[DONE]" in str(completions["responses"]["200"])


def test_docs_page_uses_the_apps_own_static_files(client, db):
    page = client.get("/api/docs/").content.decode()
    assert "swagger-ui-bundle.js" in page
    assert "//cdn" not in page and "https://" not in page.split("<body>")[0]
    asset = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert asset.status_code == 200


@pytest.mark.parametrize("path, shape", [("/v1/nope", "openai"), ("/api/v1/nothing-here", "native")])
def test_unknown_api_path_is_a_json_404(client, db, path, shape):
    response = client.post(path, data=b"{}", content_type="application/json")
    error = response.json()["error"]
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert path in error["message"]
    assert ("code" in error) is (shape == "openai")


def test_a_browser_path_keeps_djangos_404_page(client, db):
    response = client.get("/not-an-api-page")
    assert response.status_code == 404 and "application/json" not in response["Content-Type"]


def test_a_bug_in_a_view_is_a_json_500_without_traceback(pam, monkeypatch):
    from modelhub.api import views

    async def broken(call):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(views, "chat_complete", broken)
    response = APIClient(raise_request_exception=False).post(
        "/api/v1/pam/chat", {"message": "hi"}, format="json", HTTP_AUTHORIZATION=f"Bearer {pam.key}"
    )
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "internal_error"
    assert "secret internals" not in response.content.decode()


def test_body_without_a_content_type_is_still_json(pam, sim):
    response = pam.client.generic(
        "POST", "/api/v1/pam/chat", b'{"message": "hi"}', content_type="", HTTP_AUTHORIZATION=f"Bearer {pam.key}"
    )
    assert response.status_code == 200 and response.json()["model"] == "only"


def test_options_is_not_counted_against_the_keys_rate(pam, sim):
    pam.key_obj.rpm_limit = 1
    pam.key_obj.save()
    headers = {"Authorization": f"Bearer {pam.key}"}
    assert [pam.client.options("/api/v1/pam/chat", headers=headers).status_code for _ in range(3)] == [200] * 3
    assert [pam.chat().status_code for _ in range(2)] == [200, 429]
