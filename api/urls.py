from __future__ import annotations

from django.urls import path

from api import views

app_name = "api"

urlpatterns = [
    path("account/api-tokens/", views.tokens, name="tokens"),
    path("account/api-tokens/<str:token_id>/revoke/", views.revoke, name="revoke"),
    path("services/<str:service_id>/deploy-keys/", views.deploy_key, name="deploy-key"),
]
