from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from clusters.models import Cluster
from clusters.permissions import AccessCheck, check_access


class ClusterAdminForm(forms.ModelForm):
    # A kubeconfig holds credentials: write-only, so it never shows on a screen again. A password
    # input would do that too but drops the newlines the YAML needs, hence a textarea left empty.
    kubeconfig = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80, "autocomplete": "off", "spellcheck": "false"}),
        help_text="Paste a kubeconfig. It is not shown again; leave empty to keep the stored one.",
    )

    class Meta:
        model = Cluster
        fields = "__all__"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.initial["kubeconfig"] = ""

    def clean_kubeconfig(self) -> str:
        value = self.cleaned_data["kubeconfig"]
        if not value.strip() and self.instance.pk:
            return Cluster.objects.values_list("kubeconfig", flat=True).get(pk=self.instance.pk)
        return value


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    form = ClusterAdminForm
    list_display = ["name", "display_name", "connection", "ingress_domain", "external_host", "created_at"]
    list_filter = ["connection"]
    search_fields = ["name", "display_name", "ingress_domain"]
    readonly_fields = ["created_at"]
    actions = ["check_access_action"]
    change_form_template = "admin/clusters/cluster/change_form.html"

    def get_urls(self) -> list[URLPattern]:
        access = path(
            "<path:object_id>/access/",
            self.admin_site.admin_view(self.access_view),
            name="clusters_cluster_access",
        )
        return [access, *super().get_urls()]

    def access_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Ask the cluster, now, for every permission ale uses; list what it refuses."""
        cluster = self.get_object(request, object_id)
        if cluster is None or not self.has_view_permission(request, cluster):
            raise Http404("No such cluster.")
        result = check_access(cluster)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Access of ale to {cluster.label}",
            "opts": self.model._meta,
            "original": cluster,
            "result": result,
        }
        return TemplateResponse(request, "admin/clusters/cluster/access.html", context)

    @admin.action(description="Check ale's access to the selected clusters")
    def check_access_action(self, request: HttpRequest, queryset: QuerySet[Cluster]) -> None:
        for cluster in queryset:
            self._report(request, check_access(cluster), cluster)

    def response_add(self, request: HttpRequest, obj: Cluster, post_url_continue: str | None = None) -> HttpResponse:
        # Registered: say now what ale may not do there, before a deploy fails on it.
        self._report(request, check_access(obj), obj)
        return super().response_add(request, obj, post_url_continue)

    def _report(self, request: HttpRequest, result: AccessCheck, cluster: Cluster) -> None:
        level = messages.SUCCESS if result.complete else messages.WARNING if result.missing else messages.ERROR
        self.message_user(request, result.summary(), level)
        if not result.complete:
            url = reverse("admin:clusters_cluster_access", args=[cluster.pk])
            self.message_user(request, format_html('<a href="{}">Access of ale to {}, permission by permission</a>',
                                                   url, cluster.label), level)
