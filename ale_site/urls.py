from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path

from ale_site import health
from api.v1 import api as api_v1
from spaces import views as spaces_views
from spaces.forms import LoginForm

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("", spaces_views.home, name="home"),
    path("signup/", spaces_views.signup, name="signup"),
    path(
        "login/",
        auth_views.LoginView.as_view(authentication_form=LoginForm, redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("spaces.urls")),
    path("", include("environments.urls")),
    path("", include("services.urls")),
    path("", include("api.urls")),
    path("api/v1/", api_v1.urls),
    path("", include("hooks.urls")),
    path("", include("environments.compare_urls")),
]

if settings.DEBUG:
    # Lets the plain ASGI server (daphne, as in the browser tests) serve static files while
    # developing; production serves them through WhiteNoise from STATIC_ROOT.
    urlpatterns += staticfiles_urlpatterns()
