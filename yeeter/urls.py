"""The simulator page, logins, admin, the simulator API (/api/simulator/...), its OpenAPI schema and Swagger UI (served locally)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("", include("simulations.page_urls")),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/simulator/", include("exams.urls")),
    path("api/simulator/", include("simulations.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    # Log in for the browsable API (staff use it in a browser; clients use API keys).
    path("api/auth/", include("rest_framework.urls")),
]

# The API's one error shape even for URLs no route matches (and for bugs) under /api/.
handler400 = "yeeter.api.json_or_html_400"
handler404 = "yeeter.api.json_or_html_404"
handler500 = "yeeter.api.json_or_html_500"
