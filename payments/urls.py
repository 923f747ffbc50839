from django.urls import path, re_path
from django.views.generic import RedirectView

from .views import api, health, pages, sandbox, webhooks

app_name = "payments"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="payments:checkout"), name="home"),
    path("checkout/", pages.checkout, name="checkout"),
    path("checkout/pay/<slug:ref_id>/", pages.pay_page, name="pay"),
    path("checkout/return/<slug:ref_id>/", pages.checkout_return, name="return"),
    path("api/payments/", api.payment_create, name="create"),
    path("api/payments/status/<slug:ref_id>/", api.payment_status, name="status"),
    path("api/payments/update-pending/", api.update_pending, name="update_pending"),
    path("api/webhooks/<slug:code>/", webhooks.webhook, name="webhook"),
    path("health/", health.health, name="health"),
    path("favicon.ico", pages.favicon, name="favicon"),
    path("metrics", health.metrics, name="metrics"),
    path("sandbox/pay/<slug:token>/", sandbox.sandbox_pay, name="sandbox_pay"),
    # Anything else under /api/ (including malformed references) is a JSON 404.
    re_path(r"^api/", api.not_found),
]
