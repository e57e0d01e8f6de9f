"""Views of an environment's configuration: YAML download and upload, variables and secrets, the
firewall, who may open a terminal. Each is access → action → response, like `environments.views`.

The YAML upload is two steps. The preview validates the file and shows the plan; its confirm
form carries the file's text and a signed token binding the text's hash to the environment and
the user, so the confirm step can only apply the file that was previewed (validated again, and
planned again under the environment's lock, since the environment may have changed between).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from environments import actions
from environments.access import get_environment_for_user
from environments.dotenv import MAX_DOTENV_BYTES, TOO_LARGE_MESSAGE, decode_upload, parse_dotenv
from environments.forms import FirewallForm, TerminalAccessForm, VariableForm
from environments.yaml_document import (
    MAX_BYTES,
    DocumentError,
    apply_document,
    export_filename,
    export_yaml,
    parse_document,
    plan,
    preview_refusals,
)
from environments.models import Environment, EnvironmentVariable
from environments.tabs import render_tab
from spaces.access import is_owner
from spaces.http import HtmxHttpRequest, too_big_message, wants_fragment

TOKEN_MAX_AGE = 60 * 60
_YAML_SALT = "environments.yaml-apply"
_DOTENV_SALT = "environments.dotenv-apply"


def _sign(environment: Environment, request: HtmxHttpRequest, text: str, salt: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()
    return signing.dumps({"e": environment.public_id, "u": request.user.pk, "h": digest}, salt=salt, compress=True)


def _token_matches(environment: Environment, request: HtmxHttpRequest, text: str, token: str, salt: str) -> bool:
    try:
        claims = signing.loads(token, salt=salt, max_age=TOKEN_MAX_AGE)
    except signing.BadSignature:
        return False
    digest = hashlib.sha256(text.encode()).hexdigest()
    return claims == {"e": environment.public_id, "u": request.user.pk, "h": digest}


def _b64(text: str) -> str:
    # Carried base64 in a hidden input: a textarea would turn its newlines into CRLF and drop a
    # leading one, and the signed hash would no longer match.
    return base64.b64encode(text.encode()).decode()


def _unb64(value: str) -> str:
    try:
        return base64.b64decode(value.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""


def _done(request: HtmxHttpRequest, url: str) -> HttpResponse:
    if wants_fragment(request):
        return HttpResponseClientRedirect(url)
    return redirect(url)


def _page_or_fragment(
    request: HtmxHttpRequest, environment: Environment, fragment: str, context: dict[str, Any], *, status: int = 200
) -> HttpResponse:
    """The fragment for htmx (always 200: htmx 2 swaps nothing on 4xx), else a page holding it."""
    context = {"environment": environment, "project": environment.project, "space": environment.project.space, **context}
    if wants_fragment(request):
        return render(request, fragment, context)
    return render(request, "environments/travel_page.html", {**context, "fragment": fragment}, status=status)


# --- YAML ----------------------------------------------------------------------------------------


@require_GET
@login_required
def download_yaml(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    response = HttpResponse(export_yaml(environment), content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{export_filename(environment)}"'
    return response


def _read_upload(request: HtmxHttpRequest) -> bytes:
    upload = request.FILES.get("file")
    if upload is None:
        raise DocumentError(["Choose a YAML file to upload."])
    # Refused on the size the upload reports, before reading a byte of it into memory.
    if upload.size > MAX_BYTES:
        raise DocumentError([f"The file is larger than 1 MiB ({upload.size:,} bytes); an ale file is much smaller."])
    return upload.read(MAX_BYTES + 1)


def _preview_response(request: HtmxHttpRequest, environment: Environment, *, errors: list[str], filename: str = "") -> HttpResponse:
    """The preview showing why the file is refused (422 for a whole page)."""
    return _page_or_fragment(
        request, environment, "environments/_yaml_preview.html", {"errors": errors, "filename": filename}, status=422
    )


@require_POST
@login_required
def yaml_preview(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    upload = request.FILES.get("file")
    filename = upload.name if upload is not None else ""
    try:
        data = _read_upload(request)
        document = parse_document(data, environment)
    except DocumentError as exc:
        return _preview_response(request, environment, errors=exc.messages, filename=filename)
    the_plan = plan(environment, document)
    refusals = preview_refusals(environment, the_plan)
    if refusals:
        # What Apply would refuse, shown now rather than after the user confirms.
        return _preview_response(request, environment, errors=refusals, filename=filename)
    text = data.decode("utf-8-sig")
    return _page_or_fragment(
        request,
        environment,
        "environments/_yaml_preview.html",
        {
            "plan": the_plan,
            "yaml_b64": _b64(text),
            "token": _sign(environment, request, text, _YAML_SALT),
            "filename": filename,
            "errors": [],
        },
    )


@require_POST
@login_required
def yaml_apply(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    text = _unb64(request.POST.get("yaml", ""))
    if not _token_matches(environment, request, text, request.POST.get("token", ""), _YAML_SALT):
        return _preview_response(
            request, environment, errors=["This preview has expired or the file differs from the one previewed: drop it again."]
        )
    try:
        document = parse_document(text.encode(), environment)
        result = apply_document(
            request.user, environment, document, confirm_firewall=request.POST.get("confirm_firewall") == "on"
        )
    except DocumentError as exc:
        return _preview_response(request, environment, errors=exc.messages)
    except ValidationError as exc:
        return _preview_response(request, environment, errors=exc.messages)
    if result.change_count:
        messages.success(
            request,
            f"YAML applied: {len(result.created)} created, {len(result.changed)} changed, "
            f"{len(result.unchanged)} unchanged.",
        )
    else:
        messages.info(request, "YAML applied: nothing to change, the environment already matches the file.")
    return _done(request, reverse("environments:detail", args=[environment.public_id]))


# --- variables and secrets -------------------------------------------------------------------------


def _settings_response(request: HtmxHttpRequest, environment: Environment, **extra: Any) -> HttpResponse:
    return render_tab(request, environment, "settings", **extra)


def _saved(request: HtmxHttpRequest, environment: Environment, message: str, *, offer_restart: bool = False) -> HttpResponse:
    messages.success(request, message)
    if wants_fragment(request):
        return _settings_response(request, environment, offer_restart=offer_restart)
    url = reverse("environments:settings", args=[environment.public_id])
    return redirect(f"{url}?restart=1" if offer_restart else url)


# Values stay out of Django's error reports, should this view ever fail.
@sensitive_post_parameters("value", "text")
@require_POST
@login_required
def variable_set(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    form = VariableForm(request.POST)
    if not form.is_valid():
        return _settings_response(request, environment, variable_form=form)
    key = form.cleaned_data["key"]
    created, _ = actions.set_variables(
        acting_user=request.user,
        environment=environment,
        values={key: form.cleaned_data["value"]},
        is_secret=form.cleaned_data["is_secret"],
    )
    return _saved(request, environment, f"{key} {'added' if created else 'replaced'}.", offer_restart=True)


@require_POST
@login_required
def variable_delete(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    key = request.POST.get("key", "")
    if not actions.delete_variable(acting_user=request.user, environment=environment, key=key):
        messages.error(request, "There is no such variable.")
        return _settings_response(request, environment)
    return _saved(request, environment, f"{key} deleted.", offer_restart=True)


@require_POST
@login_required
def variables_restart(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    try:
        count = actions.restart_services_using_variables(acting_user=request.user, environment=environment)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return _settings_response(request, environment)
    return _saved(request, environment, f"Restarting {count} service{'s' if count != 1 else ''} with the new values.")


def _dotenv_text(request: HtmxHttpRequest) -> str:
    upload = request.FILES.get("file")
    if upload is not None:
        if upload.size > MAX_DOTENV_BYTES:
            raise ValueError(TOO_LARGE_MESSAGE)
        return decode_upload(upload.read(MAX_DOTENV_BYTES + 1))
    text = request.POST.get("text", "")
    return decode_upload(text.encode())


# Values stay out of Django's error reports, should this view ever fail.
@sensitive_post_parameters("value", "text")
@too_big_message(TOO_LARGE_MESSAGE)
@require_POST
@login_required
def dotenv_preview(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    # An unticked checkbox sends nothing: absent means a plain variable.
    is_secret = request.POST.get("is_secret") == "on"
    try:
        text = _dotenv_text(request)
    except ValueError as exc:
        return _page_or_fragment(request, environment, "environments/_dotenv_preview.html", {"errors": [str(exc)]}, status=422)
    parsed = parse_dotenv(text)
    if not text.strip():
        parsed.errors.append("The file holds no variables.")
    existing = {v.key: v for v in EnvironmentVariable.objects.filter(environment=environment)}
    rows = []
    for key, value in parsed.values.items():
        row = existing.get(key)
        if row is None:
            state = "new"
        else:
            # Compared decrypted in memory, never shown: a secret's value stays write-only.
            state = "unchanged" if row.value == value else "changed"
        rows.append({"key": key, "state": state, "secret": is_secret or (row is not None and row.is_secret)})
    return _page_or_fragment(
        request,
        environment,
        "environments/_dotenv_preview.html",
        {
            "errors": parsed.errors,
            "rows": rows,
            "duplicates": parsed.duplicates,
            "is_secret": is_secret,
            "dotenv_b64": _b64(text),
            "token": _sign(environment, request, text, _DOTENV_SALT),
        },
        status=422 if parsed.errors else 200,
    )


# Values stay out of Django's error reports, should this view ever fail.
@sensitive_post_parameters("value", "text")
@require_POST
@login_required
def dotenv_apply(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    text = _unb64(request.POST.get("text", ""))
    if not _token_matches(environment, request, text, request.POST.get("token", ""), _DOTENV_SALT):
        return _page_or_fragment(
            request,
            environment,
            "environments/_dotenv_preview.html",
            {"errors": ["This preview has expired or the text differs from the one previewed: drop it again."]},
            status=422,
        )
    parsed = parse_dotenv(text)
    if parsed.errors or not parsed.values:
        return _page_or_fragment(
            request, environment, "environments/_dotenv_preview.html", {"errors": parsed.errors or ["Nothing to apply."]}, status=422
        )
    created, replaced = actions.set_variables(
        acting_user=request.user,
        environment=environment,
        values=parsed.values,
        is_secret=request.POST.get("is_secret") == "on",
    )
    messages.success(request, f".env applied: {len(created)} added, {len(replaced)} replaced.")
    # From the preview dialog: the whole Settings tab reloads, with the offer to restart.
    return _done(request, reverse("environments:settings", args=[environment.public_id]) + "?restart=1")


# --- firewall ------------------------------------------------------------------------------------


@require_POST
@login_required
def firewall(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    form = FirewallForm(request.POST, environment=environment)
    if not form.is_valid():
        return _settings_response(request, environment, firewall_form=form)
    try:
        actions.set_firewall(
            acting_user=request.user,
            environment=environment,
            allow=form.cleaned_data["allow_external_tcp"],
            cidrs=form.cleaned_data["allow_cidrs"],
            confirmed=form.cleaned_data["confirm"],
        )
    except ValidationError as exc:
        form.add_error(None, exc)
        return _settings_response(request, environment, firewall_form=form)
    environment.refresh_from_db()
    if environment.allow_external_tcp:
        message = "External TCP connections are allowed" + (
            f" from {', '.join(environment.external_allow_cidrs)}." if environment.external_allow_cidrs else " from all IP addresses."
        )
    else:
        message = "External TCP connections are blocked."
    return _saved(request, environment, message)


# --- terminal access -----------------------------------------------------------------------------


@require_POST
@login_required
def terminal_access(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    if not is_owner(request.user, environment.project.space):
        return HttpResponse("Only the space's owners may change who can open a terminal.", status=403)
    form = TerminalAccessForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose who may open a terminal.")
        return redirect(reverse("environments:settings", args=[environment.public_id]))
    environment = actions.set_terminal_access(
        acting_user=request.user, environment=environment, terminal_access=form.cleaned_data["terminal_access"]
    )
    messages.success(request, f"Terminal access: {environment.get_terminal_access_display().lower()}.")
    return redirect(reverse("environments:settings", args=[environment.public_id]))
