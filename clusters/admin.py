from __future__ import annotations

from django import forms
from django.contrib import admin

from clusters.models import Cluster


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
