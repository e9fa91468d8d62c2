"""Keys as a user manages them: an expiry date, rotation with a grace period for the old
secret, revocation, and each key's last use and spend in admin. A key refused anywhere is
refused on every endpoint and, after the change, on the next request to every process."""

from __future__ import annotations

import io
import json
import re
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from modelhub import selectors, services
from modelhub.audit import Actor, Source
from modelhub.models import ApiKey, ConfigChange
from modelhub.routing import state as state_module
from modelhub.routing.snapshot import KeySpec
from modelhub.runtime import runtime, runtime_reset
from modelhub.services import API_KEY_EXPIRED, ConfigError, api_key_hash
from tests.e2e.conftest import needs_postgres, needs_redis, servers_running
from tests.factories import ApiKeyFactory, UsageRecordFactory
from tests.hubtools import KEY_ENV, Hub

CHAT = ("/api/v1/pam/chat", {"message": "Hi", "route": "pam"})
COMPLETION = ("/v1/chat/completions", {"model": "pam", "messages": [{"role": "user", "content": "Hi"}]})
ADMIN_API = "/api/v1/admin/models/config"
SYSTEM = Actor("tests", Source.SYSTEM)
SECRET = re.compile(r"pam_[A-Za-z0-9_-]+")


@pytest.fixture
def hub(hub):
    """Route "pam" answered by one simulated model."""
    hub.route("pam", [hub.model("only", "openai")])
    return hub


@pytest.fixture
def staff_key(django_user_model):
    """A staff user's key (it may call the admin API too), and its secret."""
    staff = django_user_model.objects.create_user("keys-ops", is_staff=True)
    return services.api_key_create(name="ops-key", user=staff)


def post(client, endpoint, secret):
    path, body = endpoint
    response = client.post(
        path, orjson.dumps(body), content_type="application/json", headers={"Authorization": f"Bearer {secret}"}
    )
    runtime().ledger.flush()
    return response


def get(client, path, secret):
    return client.get(path, headers={"Authorization": f"Bearer {secret}"})


def expire(key: ApiKey, *, at: datetime | None = None) -> None:
    """As an operator does in admin: the key's expiry set, the change saved (and audited)."""
    services.api_key_update(
        key=key,
        name=key.name,
        user=key.user,
        is_active=key.is_active,
        routes=list(key.routes.all()),
        rpm_limit=key.rpm_limit,
        daily_budget_usd=key.daily_budget_usd,
        expires_at=at or timezone.now() - timedelta(seconds=1),
        by=SYSTEM,
    )


def grace_end(key: ApiKey, at: datetime) -> None:
    """Move the end of the rotated-out secret's grace (the clock, as the key sees it)."""
    key.previous_valid_until = at
    key.save(update_fields=["previous_valid_until"])


def error_message(response) -> str:
    return response.json()["error"]["message"]


def row_text(change: ConfigChange) -> str:
    return json.dumps([change.actor, change.target, change.before, change.after])


# --- expiry ---------------------------------------------------------------------------


def test_a_key_before_its_expiry_is_served(hub, client):
    expire(hub.key_obj, at=timezone.now() + timedelta(days=1))

    assert post(client, CHAT, hub.key).status_code == 200
    assert post(client, COMPLETION, hub.key).status_code == 200


def test_an_expired_key_gets_401_saying_so_on_chat(hub, client):
    expire(hub.key_obj)

    response = post(client, CHAT, hub.key)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["type"] == "authentication_error"
    assert error_message(response) == API_KEY_EXPIRED


def test_an_expired_key_gets_401_saying_so_on_the_openai_endpoint(hub, client):
    expire(hub.key_obj)

    response = post(client, COMPLETION, hub.key)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert error_message(response) == API_KEY_EXPIRED
    assert get(client, "/v1/models", hub.key).status_code == 401


def test_an_expired_staff_key_gets_401_saying_so_on_the_admin_api(hub, client, staff_key):
    key, secret = staff_key
    assert get(client, ADMIN_API, secret).status_code == 200
    expire(key)

    response = get(client, ADMIN_API, secret)

    assert response.status_code == 401
    assert error_message(response) == API_KEY_EXPIRED


def test_an_expired_key_leaves_no_ledger_row_and_reaches_no_provider(hub, client, sim):
    expire(hub.key_obj)

    post(client, CHAT, hub.key)

    assert sim.calls == [] and not hub.key_obj.usagerecord_set.exists()


def test_an_expiry_takes_effect_by_the_clock_without_a_reload(hub, client, settings, monkeypatch):
    settings.MODELHUB = {**settings.MODELHUB, "SNAPSHOT_MAX_AGE_SECONDS": 3600}
    expire(hub.key_obj, at=timezone.now() + timedelta(seconds=60))
    assert post(client, CHAT, hub.key).status_code == 200
    builds = []
    build = state_module.snapshot_build
    monkeypatch.setattr(state_module, "snapshot_build", lambda **kw: builds.append(kw) or build(**kw))
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)

    response = post(client, CHAT, hub.key)

    assert response.status_code == 401 and error_message(response) == API_KEY_EXPIRED
    assert builds == []  # the same snapshot, read against a later clock


def test_clearing_the_expiry_serves_the_key_again(hub, client):
    expire(hub.key_obj)
    assert post(client, CHAT, hub.key).status_code == 401

    services.api_key_update(
        key=hub.key_obj,
        name="tests",
        user=None,
        is_active=True,
        routes=[],
        rpm_limit=None,
        daily_budget_usd=None,
        expires_at=None,
    )

    assert post(client, CHAT, hub.key).status_code == 200


def test_a_key_spec_expires_at_its_moment_and_never_without_one():
    spec = KeySpec(pk=1, name="k", is_staff=False, valid_until=1000.0)

    assert (spec.expired(999.9), spec.expired(1000.0)) == (False, True)
    assert not KeySpec(pk=1, name="k", is_staff=False).expired(time.time())


# --- rotation -------------------------------------------------------------------------


def test_within_the_grace_both_secrets_work_and_after_it_only_the_new_one(hub, client):
    old = hub.key
    new = services.api_key_rotate(key=hub.key_obj, grace=timedelta(hours=1))
    assert new != old

    for secret in (old, new):
        assert post(client, CHAT, secret).status_code == 200
        assert post(client, COMPLETION, secret).status_code == 200

    grace_end(hub.key_obj, timezone.now() - timedelta(seconds=1))

    assert post(client, CHAT, new).status_code == 200
    refused = post(client, CHAT, old)
    assert refused.status_code == 401 and error_message(refused) == API_KEY_EXPIRED
    assert post(client, COMPLETION, old).status_code == 401


def test_the_grace_ends_by_the_clock_without_a_reload(hub, client, settings, monkeypatch):
    settings.MODELHUB = {**settings.MODELHUB, "SNAPSHOT_MAX_AGE_SECONDS": 3600}
    old = hub.key
    new = services.api_key_rotate(key=hub.key_obj, grace=timedelta(seconds=60))
    assert post(client, CHAT, old).status_code == 200
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)

    assert post(client, CHAT, old).status_code == 401
    assert post(client, CHAT, new).status_code == 200


def test_both_secrets_are_one_key_for_limits_and_the_ledger(hub, client):
    old = hub.key
    new = services.api_key_rotate(key=hub.key_obj, grace=timedelta(hours=1))

    post(client, CHAT, old)
    post(client, CHAT, new)

    assert hub.key_obj.usagerecord_set.count() == 2
    keys = runtime().routing.snapshot.keys
    assert keys[api_key_hash(old)].pk == keys[api_key_hash(new)].pk == hub.key_obj.pk


def test_a_rotation_without_grace_refuses_the_old_secret_at_once(hub, client):
    old = hub.key
    new = services.api_key_rotate(key=hub.key_obj, grace=timedelta(0))

    assert post(client, CHAT, old).status_code == 401
    assert post(client, CHAT, new).status_code == 200


def test_a_second_rotation_ends_the_first_old_secret_at_once(hub, client):
    first = hub.key
    second = services.api_key_rotate(key=hub.key_obj, grace=timedelta(hours=1))
    third = services.api_key_rotate(key=hub.key_obj, grace=timedelta(hours=1))

    assert post(client, CHAT, first).status_code == 401
    assert post(client, CHAT, second).status_code == 200
    assert post(client, CHAT, third).status_code == 200


def test_the_old_secret_within_its_grace_still_expires_with_the_key(hub, client):
    old = hub.key
    services.api_key_rotate(key=hub.key_obj, grace=timedelta(days=7))
    expire(hub.key_obj)

    assert post(client, CHAT, old).status_code == 401


def test_the_old_secret_of_a_staff_key_works_on_the_admin_api_until_its_grace_ends(hub, client, staff_key):
    key, old = staff_key
    new = services.api_key_rotate(key=key, grace=timedelta(hours=1))
    assert get(client, ADMIN_API, old).status_code == 200
    assert get(client, ADMIN_API, new).status_code == 200

    grace_end(key, timezone.now() - timedelta(seconds=1))

    response = get(client, ADMIN_API, old)
    assert response.status_code == 401 and error_message(response) == API_KEY_EXPIRED
    assert get(client, ADMIN_API, new).status_code == 200


def test_a_negative_grace_is_refused(db):
    key = ApiKeyFactory()

    with pytest.raises(ConfigError):
        services.api_key_rotate(key=key, grace=timedelta(hours=-1))
    assert ApiKey.objects.get(pk=key.pk).previous_key_hash is None


def test_rotation_is_audited_without_any_secret_or_hash(db):
    key = ApiKeyFactory(secret="pam_rotated-away-secret")
    old_prefix = key.prefix

    new = services.api_key_rotate(key=key, grace=timedelta(hours=2), by=SYSTEM)

    change = ConfigChange.objects.get(target_type="apikey", action="rotate")
    assert change.before == {"prefix": old_prefix, "previous_valid_until": None}
    assert change.after["prefix"] == key.prefix == new[:12]
    assert change.after["previous_valid_until"] == key.previous_valid_until.isoformat()
    for secret in ("pam_rotated-away-secret", new, api_key_hash("pam_rotated-away-secret"), api_key_hash(new)):
        assert secret not in row_text(change)


def test_an_expiry_edit_is_audited_with_before_and_after_and_no_secret(db):
    secret = "pam_expiring-secret-value"
    key = ApiKeyFactory(secret=secret)
    at = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)

    expire(key, at=at)

    change = ConfigChange.objects.get(target_type="apikey", action="change")
    assert (change.before, change.after) == ({"expires_at": None}, {"expires_at": at.isoformat()})
    assert secret not in row_text(change) and api_key_hash(secret) not in row_text(change)


# --- revocation and every process ----------------------------------------------------


def test_a_revoked_key_gets_401_on_its_next_request(hub, client):
    assert post(client, CHAT, hub.key).status_code == 200

    services.api_key_set_active(key=hub.key_obj, active=False)

    assert post(client, CHAT, hub.key).status_code == 401
    assert post(client, COMPLETION, hub.key).status_code == 401


@pytest.fixture(params=[pytest.param("redis", marks=needs_redis), "version file"])
def store(request, settings):
    """How the change travels to the servers: shared Redis keys, or the version file."""
    if request.param == "version file":
        settings.REDIS_URL = ""
        runtime_reset()  # this process bumps the file the servers stat
    return request.param


@pytest.fixture
def e2e(store, transactional_db, sim, simulator, client, monkeypatch):
    """Two hub servers on the test database (sharing this process's Redis, or none), a route
    on the simulator and the hub's key; the servers stop before the database is flushed."""
    monkeypatch.setenv(KEY_ENV, "sim-test-key")
    hub = Hub(simulator, client)
    hub.route("pam", [hub.model("only", "openai")])
    with servers_running() as servers:
        yield hub, servers


@needs_postgres
def test_a_key_revoked_in_admin_gets_401_on_the_very_next_request_to_every_process(e2e, admin_client):
    hub, servers = e2e
    for server in servers:
        assert server.chat(hub.key)["model"] == "only"  # each process holds the key in its snapshot

    admin_client.post(
        reverse("admin:modelhub_apikey_changelist"), {"action": "deactivate", "_selected_action": [hub.key_obj.pk]}
    )

    for server in servers:
        status, body = server.request("POST", *CHAT, key=hub.key)
        assert status == 401, body


@needs_postgres
def test_an_expiry_and_a_rotation_reach_every_process_on_the_next_request(e2e):
    hub, servers = e2e
    expiring, expiring_secret = services.api_key_create(name="expiring")
    for server in servers:
        server.chat(hub.key)
        server.chat(expiring_secret)

    expire(expiring)
    new = services.api_key_rotate(key=hub.key_obj, grace=timedelta(0), by=SYSTEM)

    for server in servers:
        status, body = server.request("POST", *CHAT, key=expiring_secret)
        assert (status, body["error"]["message"]) == (401, API_KEY_EXPIRED)
        assert server.request("POST", *CHAT, key=hub.key)[0] == 401
        assert server.chat(new)["model"] == "only"


# --- admin: rotate, expiry, last use and spend -----------------------------------------


def changelist():
    return reverse("admin:modelhub_apikey_changelist")


def rotate_in_admin(admin_client, keys, **extra):
    data = {"action": "rotate", "_selected_action": [k.pk for k in keys], **extra}
    return admin_client.post(changelist(), data, follow=True)


def row_of(html: str, name: str) -> str:
    """The changelist row of the key named ``name``, from its name to the row's end."""
    return re.search(rf">{re.escape(name)}</a>.*?</tr>", html, re.S).group(0)


def shown_secrets(response) -> list[str]:
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    return [SECRET.search(text).group(0) for text in texts if "Copy the new secret" in text]


def test_rotate_action_shows_the_new_secret_once_and_keeps_the_old_one_for_the_grace(admin_client):
    key = ApiKeyFactory(secret="pam_admin-rotated-old")
    before = timezone.now()

    response = rotate_in_admin(admin_client, [key], grace_hours="24")

    [secret] = shown_secrets(response)
    key.refresh_from_db()
    assert key.key_hash == api_key_hash(secret) and key.previous_key_hash == api_key_hash("pam_admin-rotated-old")
    assert before + timedelta(hours=24) <= key.previous_valid_until <= timezone.now() + timedelta(hours=24)
    assert response.content.decode().count(secret) == 1
    for url in (changelist(), reverse("admin:modelhub_apikey_change", args=[key.pk])):
        assert secret not in admin_client.get(url).content.decode()
    change = ConfigChange.objects.get(action="rotate")
    assert change.actor == "admin" and change.source == "admin"
    assert secret not in row_text(change) and key.key_hash not in row_text(change)


def test_rotate_action_without_grace_refuses_the_old_secret_at_once(admin_client, hub, client):
    old = hub.key

    response = rotate_in_admin(admin_client, [hub.key_obj], grace_hours="0")

    [new] = shown_secrets(response)
    assert post(client, CHAT, old).status_code == 401
    assert post(client, CHAT, new).status_code == 200


def test_rotate_action_defaults_to_a_day_of_grace(admin_client):
    key = ApiKeyFactory()

    rotate_in_admin(admin_client, [key])

    key.refresh_from_db()
    assert timedelta(hours=23) < key.previous_valid_until - timezone.now() <= timedelta(hours=24)


def test_rotate_action_refuses_a_grace_not_offered(admin_client):
    key = ApiKeyFactory()

    response = rotate_in_admin(admin_client, [key], grace_hours="-5")

    assert response.status_code == 200 and shown_secrets(response) == []
    key.refresh_from_db()
    assert key.previous_key_hash is None


def test_expiry_is_set_in_the_add_and_change_forms(admin_client):
    at = {"expires_at_0": "2031-01-02", "expires_at_1": "03:04:05"}  # the admin's date and time inputs
    admin_client.post(reverse("admin:modelhub_apikey_add"), {"name": "key-expiring", **at})
    key = ApiKey.objects.get(name="key-expiring")
    assert key.expires_at == datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)

    edit = {"name": "key-expiring", "is_active": "on", "expires_at_0": "", "expires_at_1": ""}
    assert admin_client.post(reverse("admin:modelhub_apikey_change", args=[key.pk]), edit).status_code == 302

    key.refresh_from_db()
    assert key.expires_at is None
    assert ConfigChange.objects.get(target_type="apikey", action="change").before == {
        "expires_at": "2031-01-02T03:04:05+00:00"
    }


def test_the_key_list_shows_each_keys_status(admin_client):
    ApiKeyFactory(name="key-live")
    ApiKeyFactory(name="key-gone", is_active=False)
    ApiKeyFactory(name="key-old", expired=True)
    rotating = ApiKeyFactory(name="key-rotating")
    services.api_key_rotate(key=rotating, grace=timedelta(hours=1))

    html = admin_client.get(changelist()).content.decode()

    assert '<td class="field-status">active</td>' in row_of(html, "key-live")
    assert '<td class="field-status">revoked</td>' in row_of(html, "key-gone")
    assert '<td class="field-status">expired</td>' in row_of(html, "key-old")
    assert '<td class="field-status">active (old secret until ' in row_of(html, "key-rotating")


TODAY = date(2026, 3, 15)


def at(day: int, hour: int = 12, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


@pytest.fixture
def ledger(db, monkeypatch):
    """Two keys' ledger around "today", 2026-03-15 (UTC): rows today, earlier this month,
    last month, and the other key's; costs that only sum right unrounded."""
    monkeypatch.setattr(selectors, "today", lambda: TODAY)
    spender, other, idle = ApiKeyFactory(name="key-spender"), ApiKeyFactory(name="key-other"), ApiKeyFactory()
    rows = [
        (spender, at(15, 9), "0.250000000001"),
        (spender, at(15, 10), "0.000000000002"),
        (spender, at(1, 0), "1.5"),
        (spender, at(28, 23, month=2), "7"),
        (other, at(15, 11), "3"),
    ]
    for key, created_at, cost in rows:
        UsageRecordFactory(api_key=key, created_at=created_at, cost_usd=Decimal(cost))
    return {"spender": spender, "other": other, "idle": idle}


def test_spend_today_and_this_month_and_last_use_are_summed_per_key_from_the_ledger(ledger):
    keys = selectors.api_keys_with_usage(keys=ApiKey.objects.all())
    figures = {k.pk: (k.last_used_at, k.spend_today_usd, k.spend_month_usd) for k in keys}

    assert figures[ledger["spender"].pk] == (at(15, 10), Decimal("0.250000000003"), Decimal("1.750000000003"))
    assert figures[ledger["other"].pk] == (at(15, 11), Decimal("3"), Decimal("3"))
    assert figures[ledger["idle"].pk] == (None, Decimal(0), Decimal(0))


def test_the_key_list_shows_last_use_and_spend_today_and_this_month(admin_client, ledger):
    html = admin_client.get(changelist()).content.decode()

    row = row_of(html, "key-spender")
    assert '<td class="field-last_used">2026-03-15 10:00:00</td>' in row
    assert '<td class="field-spend_today">$0.25</td>' in row
    assert '<td class="field-spend_month">$1.75</td>' in row
    idle = row_of(html, ledger["idle"].name)
    assert '<td class="field-last_used">never</td>' in idle and '<td class="field-spend_today">$0.00</td>' in idle


def test_the_key_change_page_shows_last_use_and_spend(admin_client, ledger):
    html = admin_client.get(reverse("admin:modelhub_apikey_change", args=[ledger["spender"].pk])).content.decode()

    assert "2026-03-15 10:00:00" in html and "$1.75" in html and "$0.25" in html


def test_the_key_list_is_sorted_by_spend(admin_client, ledger):
    html = admin_client.get(changelist(), {"o": "-7"}).content.decode()  # column 7: spend this month

    assert html.index("key-other") < html.index("key-spender") < html.index(ledger["idle"].name)


def test_the_key_list_makes_the_same_queries_for_more_keys_and_rows(admin_client):
    def queries_for_listing():
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(changelist()).status_code == 200
        return len(ctx)

    UsageRecordFactory(api_key=ApiKeyFactory())
    few = queries_for_listing()
    for _ in range(5):
        key = ApiKeyFactory()
        UsageRecordFactory(api_key=key)
        UsageRecordFactory(api_key=key)
    assert queries_for_listing() == few


# --- management commands ----------------------------------------------------------------


def test_rotateapikey_prints_the_new_key_last_and_keeps_the_old_one_for_the_grace(db):
    key = ApiKeyFactory(name="cli-rotated", secret="pam_cli-rotated-old")
    out = io.StringIO()

    call_command("rotateapikey", "cli-rotated", "--grace-hours", "2", stdout=out)

    secret = out.getvalue().strip().splitlines()[-1]
    key.refresh_from_db()
    assert key.key_hash == api_key_hash(secret) and key.previous_key_hash == api_key_hash("pam_cli-rotated-old")
    assert timedelta(hours=1, minutes=59) < key.previous_valid_until - timezone.now() <= timedelta(hours=2)
    change = ConfigChange.objects.get(action="rotate")
    assert change.actor == "manage.py rotateapikey" and secret not in row_text(change)


def test_rotateapikey_names_a_key_by_its_prefix_when_names_repeat(db):
    first, second = ApiKeyFactory(name="twin"), ApiKeyFactory(name="twin")

    with pytest.raises(CommandError, match="name one by its prefix"):
        call_command("rotateapikey", "twin", stdout=io.StringIO())
    call_command("rotateapikey", second.prefix, stdout=io.StringIO())

    first.refresh_from_db(), second.refresh_from_db()
    assert (first.previous_key_hash, second.previous_key_hash is not None) == (None, True)


@pytest.mark.parametrize("args", [["nobody"], ["twin", "--grace-hours", "-1"], ["twin", "--grace-hours", "soon"]])
def test_rotateapikey_refuses_an_unknown_key_or_a_bad_grace(db, args):
    ApiKeyFactory(name="twin")

    with pytest.raises(CommandError):
        call_command("rotateapikey", *args, stdout=io.StringIO())
    assert not ApiKey.objects.exclude(previous_key_hash=None).exists()


def test_createapikey_sets_an_expiry(db):
    call_command("createapikey", "cli-expiring", "--expires-at", "2031-01-02", stdout=io.StringIO())
    call_command("createapikey", "cli-expiring-at", "--expires-at", "2031-01-02T03:04+02:00", stdout=io.StringIO())

    assert ApiKey.objects.get(name="cli-expiring").expires_at == datetime(2031, 1, 2, tzinfo=UTC)
    assert ApiKey.objects.get(name="cli-expiring-at").expires_at == datetime(2031, 1, 2, 1, 4, tzinfo=UTC)
    with pytest.raises(CommandError, match="not a date"):
        call_command("createapikey", "cli-bad", "--expires-at", "next week", stdout=io.StringIO())
