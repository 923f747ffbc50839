"""Project URLs: the back office, the public checkout and provider webhooks."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("payments.urls")),
]

# Each answers JSON under /api/ and Django's page elsewhere.
handler400 = "payments.views.errors.bad_request"
handler403 = "payments.views.errors.permission_denied"
handler404 = "payments.views.errors.page_not_found"
handler500 = "payments.views.errors.server_error"
