from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/pam-hybrid/", include("modelhub.api.hybrid_urls")),
    path("", include("modelhub.api.urls")),
    path("", include("modelhub.pages.urls")),
]

# Unknown paths under /v1/ and /api/ answer JSON in the API's error shape.
handler404 = "modelhub.api.errors.json_not_found"
