"""The ASGI entry point: API paths skip the browser middleware, the rest keeps it."""

import pytest
from asgiref.testing import ApplicationCommunicator


async def _get(path, method="GET"):
    from pam.asgi import application

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    app = ApplicationCommunicator(application, scope)
    await app.send_input({"type": "http.request", "body": b"{}", "more_body": False})
    start = await app.receive_output(5)
    await app.receive_output(5)
    return start["status"], {k.lower(): v for k, v in start["headers"]}


@pytest.mark.django_db(transaction=True)
async def test_chat_is_served_without_browser_middleware():
    status, headers = await _get("/api/v1/pam/chat", "POST")
    assert status == 401  # no CSRF 403: the API authenticates by key
    assert b"x-frame-options" not in headers  # clickjacking middleware skipped
    assert b"vary" not in headers  # no session or auth middleware touched the response


@pytest.mark.django_db(transaction=True)
async def test_admin_keeps_the_browser_middleware():
    status, headers = await _get("/admin/")
    assert status == 302
    assert headers[b"x-frame-options"] == b"DENY"
