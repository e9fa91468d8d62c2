"""Who may see the operator's pages: staff users, signed in through admin. A page sends
anyone else to admin's login, or answers a signed-in user who is not staff 403; the pages'
JSON endpoints answer 403 in the API's error shape instead of redirecting (a script that
polls them has no login form to follow)."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.urls import reverse

STAFF_ONLY = "Staff only: sign in to admin as a staff user."


def is_staff(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


def forbidden_json(message: str = STAFF_ONLY, status: int = 403) -> JsonResponse:
    return JsonResponse({"error": {"type": "permission_error", "message": message}}, status=status)


def staff_page(view):
    """Anonymous: to /admin/login/?next=<this page>; signed in but not staff: 403."""

    @wraps(view)
    def page(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not is_staff(request.user):
            raise PermissionDenied(STAFF_ONLY)
        return view(request, *args, **kwargs)

    return page


def staff_json(view):
    """Anyone but a signed-in staff user: 403 JSON."""

    @wraps(view)
    def endpoint(request, *args, **kwargs):
        if not is_staff(request.user):
            return forbidden_json()
        return view(request, *args, **kwargs)

    return endpoint
