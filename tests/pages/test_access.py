"""Who may see the operator's pages: a staff user signed in through admin. Anyone else is
sent to admin's login (pages) or refused with 403 JSON (the pages' endpoints); a signed-in
user who is not staff gets 403 everywhere; an API key opens nothing here."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

PAGES = [
    "/dashboard/",
    "/dashboard/days/",
    "/dashboard/days/?day=2026-01-01",
    "/dashboard/routes/r1/",
    "/dashboard/models/prov-pages/m-one/",
    "/playground/",
    "/playground/?conversation=c-1&route=r1",
]
ENDPOINTS = [
    ("get", "/dashboard/live", None),
    ("post", "/playground/chat", {"message": "Hi", "route": "r1"}),
    ("post", "/playground/fault", {"route": "r1", "action": "fail"}),
]


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_is_sent_to_the_admin_login(client, ledger, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=/")


@pytest.mark.parametrize("path", PAGES)
def test_a_user_who_is_not_staff_gets_403(user_client, ledger, path):
    response = user_client.get(path)

    assert response.status_code == 403
    assert b"Staff only" in response.content


@pytest.mark.parametrize("path", PAGES)
def test_staff_sees_the_page(staff_client, ledger, path):
    assert staff_client.get(path).status_code == 200


@pytest.mark.parametrize("method, path, body", ENDPOINTS)
@pytest.mark.parametrize("caller", ["anonymous", "user", "key"])
def test_the_pages_endpoints_refuse_all_but_staff_with_403_json(request, ledger, method, path, body, caller):
    client = {"anonymous": Client(), "key": Client(), "user": request.getfixturevalue("user_client")}[caller]
    headers = {"Authorization": f"Bearer {_staff_key()}"} if caller == "key" else {}

    response = getattr(client, method)(path, body, content_type="application/json", headers=headers)

    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"


def _staff_key() -> str:
    from django.contrib.auth import get_user_model

    from modelhub.services import api_key_create

    user = get_user_model().objects.create_user("key-owner", is_staff=True)
    return api_key_create(name="staff key", user=user)[1]


def test_the_playground_chat_is_not_in_the_public_api_schema(client):
    paths = client.get("/api/schema/?format=json").json()["paths"]

    assert "/api/v1/pam/chat" in paths
    assert not [path for path in paths if path.startswith(("/playground", "/dashboard"))]


def test_pages_link_each_other_from_admins_header(staff_client):
    html = staff_client.get("/dashboard/").content.decode()

    assert 'href="/playground/"' in html and 'href="/admin/"' in html
