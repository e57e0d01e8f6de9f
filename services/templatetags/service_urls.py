"""`{% service_url "stop" service %}`: a service's URL without a full `reverse()` per card.

An environment page renders hundreds of cards with ten links each; `reverse()` costs most of a
card's time. Each URL name is reversed once, with a placeholder id, and the service's public id
is put in its place. A name that does not exist (yet) gives "", as `{% url ... as var %}` does,
so a card can offer a link only once its page exists.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from html import escape

from django import template
from django.template.defaultfilters import date as date_filter
from django.template.defaultfilters import timesince_filter
from django.utils.safestring import mark_safe
from django.utils.timezone import template_localtime
from django.test.signals import setting_changed
from django.dispatch import receiver
from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse

from services.models import Service
from services.templatetags.build_tags import elapsed_since

register = template.Library()

# Public ids are lowercase letters and digits: this cannot occur in one.
_PLACEHOLDER = "SERVICE-ID-PLACEHOLDER"


@lru_cache(maxsize=256)
def _pattern(name: str, urlconf: str | None, script_prefix: str) -> str:
    try:
        return reverse(f"services:{name}", args=[_PLACEHOLDER], urlconf=urlconf)
    except NoReverseMatch:
        return ""


@register.simple_tag
def service_url(name: str, service: Service) -> str:
    pattern = _pattern(name, get_urlconf(), get_script_prefix())
    return pattern.replace(_PLACEHOLDER, service.public_id) if pattern else ""


@receiver(setting_changed)
def _forget_patterns(*, setting: str, **kwargs: object) -> None:
    # Tests that swap the URLconf must not get URLs reversed from the old one.
    if setting == "ROOT_URLCONF":
        _pattern.cache_clear()


# --- the service card ---------------------------------------------------------------------------------
#
# `{% service_card service %}` renders templates/services/_card.html's card in one call: the
# environment page shows hundreds of them, and the template engine's cost per variable, filter
# and tag (~60 of them in a card) made the page grow by about a millisecond per card. Every value
# is escaped as the template would; the csrf token is read from the context once per card.


_OOB = ' hx-swap-oob="true"'
_FAILED = ' is-failed" role="alert"'
_NOT_FAILED = '"'
_REDEPLOY = '<button type="submit" class="menu-item">Redeploy</button>'


def _e(value: object) -> str:
    # `conditional_escape` without its lazy-string wrappers: the same characters, escaped by
    # the same function, tens of times per card.
    html = getattr(value, "__html__", None)
    return html() if html is not None else escape(str(value))


def _date(value: datetime | None, fmt: str) -> str:
    """The `date` filter for the card's few formats, without its per-call format lookups."""
    if not value:
        return ""
    if fmt == "U.u":
        return f"{int(value.timestamp())}.{value.microsecond:06d}"
    if fmt == "U":
        return str(int(value.timestamp()))
    local = template_localtime(value)
    if fmt == "c":
        return local.isoformat()
    if fmt == "Y-m-d H:i":
        return f"{local.year:04d}-{local.month:02d}-{local.day:02d} {local.hour:02d}:{local.minute:02d}"
    return date_filter(local, fmt)


def _post(url: str, target: str, csrf: str, button: str) -> str:
    return (
        f'<form method="post" action="{url}" hx-post="{url}" hx-target="#{target}" hx-swap="outerHTML">'
        f"{csrf}{button}</form>"
    )


@register.simple_tag(takes_context=True)
def service_card(context: template.Context, service: Service) -> str:
    sid = _e(service.public_id)
    card_id = f"service-{sid}"
    urlconf, prefix = get_urlconf(), get_script_prefix()

    def service_url(name: str, service: Service) -> str:
        pattern = _pattern(name, urlconf, prefix)
        return pattern.replace(_PLACEHOLDER, service.public_id) if pattern else ""

    url = {name: _e(service_url(name, service)) for name in ("detail", "logs", "terminal")}
    status = service.status
    head = [
        f'<article class="card service-card" id="{card_id}" data-status="{_e(status)}" '
        f'data-changed="{_date(service.status_changed_at, "U.u")}"{_OOB if context.get("oob") else ""}>\n',
        "  \n",
        '  <header class="service-card-head">\n',
        f'    <h3 class="service-card-name"><a href="{url["detail"]}">{_e(service.name)}</a></h3>\n',
        f'    <span class="kind-tag">{"Web" if service.is_web else "TCP"}</span>\n',
    ]
    if service.is_spot:
        head.append('    <span class="badge-spot" title="Runs on spot resources">Spot</span>\n')
    if status == "building":
        head.append(
            f'    <span class="status status-building">Building · <span data-building-since="'
            f'{_date(service.status_changed_at, "U")}">{_e(elapsed_since(service.status_changed_at))}</span></span>\n'
        )
    else:
        head.append(f'    <span class="status status-{_e(status)}">{_e(service.get_status_display())}</span>\n')
    head.append("  </header>\n")
    parts = head
    if service.status_reason:
        failed = status == "failed"
        parts.append(
            f'  <p class="service-card-reason{_FAILED if failed else _NOT_FAILED}>'
            f"{_e(service.status_reason)}</p>\n"
        )
    parts.append(
        '  <dl class="service-card-facts">\n'
        f'    <dt>Image</dt><dd class="mono" title="{_e(service.image)}">{_e(service.image or "—")}</dd>\n'
        f'    <dt>Replicas</dt><dd class="service-card-replicas">{_e(service.ready_replicas)} / '
        f"{_e(service.desired_replicas)} ready</dd>\n"
        "  </dl>\n"
        '  <div class="service-card-links">\n'
    )
    if service.is_web:
        if service.access_url:
            parts.append(
                f'<a class="button button-small" href="{_e(service.access_url)}" target="_blank" rel="noopener">Access</a>\n'
            )
    else:
        private = _e(service.private_address)
        parts.append(
            f'<button type="button" class="button button-small copy-address" data-copy="{private}" '
            f'title="Private network address: {private}">Copy Address <code>{private}</code></button>\n'
        )
        if service.external_address:
            external = _e(service.external_address)
            parts.append(
                f'<button type="button" class="button button-small copy-address" data-copy="{external}" '
                f'title="External address (firewall open)">External <code>{external}</code></button>\n'
            )
    if service.repository_url:
        parts.append(
            f'<a class="button button-small" href="{_e(service.repository_web_url)}" target="_blank" rel="noopener" '
            'data-link="repository">Repository</a>\n'
        )
    # Log view and Terminal: shown once their pages exist (an unknown URL name gives "").
    if url["logs"]:
        parts.append(f'<a class="button button-small" href="{url["logs"]}" data-link="logs">Log view</a>\n')
    if url["terminal"]:
        parts.append(f'<a class="button button-small" href="{url["terminal"]}" data-link="terminal">Terminal</a>\n')
    parts.append('  </div>\n  <footer class="service-card-foot">\n    <p class="service-card-by">\n      ')
    if service.deployed_by:
        username = service.deployed_by.username
        parts.append(
            f'<span class="avatar avatar-small" aria-hidden="true">{_e(username[:1].upper())}</span>'
            f"Deployed by <strong>{_e(username)}</strong>"
        )
    else:
        parts.append("Deployed")
    if service.deployed_at:
        parts.append(
            f' <time datetime="{_date(service.deployed_at, "c")}" title="{_date(service.deployed_at, "Y-m-d H:i")}">'
            f"{_e(timesince_filter(service.deployed_at))} ago</time>"
        )
    parts.append("\n    </p>\n")
    if status != "deleting":
        csrf = _csrf_input(context)
        parts.append('      <div class="service-card-actions">\n')
        if service.desired_state == "running":
            stop = _e(service_url("stop", service))
            parts.append(_post(stop, card_id, csrf, '<button type="submit" class="button button-small">Stop</button>'))
        else:
            start = _e(service_url("start", service))
            parts.append(
                _post(start, card_id, csrf, '<button type="submit" class="button button-small button-primary">Start</button>')
            )
        redeploy, edit, delete = (_e(service_url(name, service)) for name in ("redeploy", "edit", "delete"))
        parts.append(
            '\n        <details class="menu-anchor card-menu">\n'
            f'          <summary class="button button-small" aria-label="More actions for {_e(service.name)}">⋯</summary>\n'
            '          <div class="menu menu-right">\n'
            f"            {_post(redeploy, card_id, csrf, _REDEPLOY)}\n"
            f'            <a class="menu-item" href="{edit}" hx-get="{edit}" hx-target="#modal-root">Edit and deploy…</a>\n'
            f'            <a class="menu-item" href="{url["detail"]}">Revisions</a>\n'
            f'            <a class="menu-item menu-item-danger" href="{delete}" hx-get="{delete}" hx-target="#modal-root">Delete…</a>\n'
            "          </div>\n"
            "        </details>\n"
            "      </div>\n"
        )
    parts.append("  </footer>\n</article>\n")
    return mark_safe("".join(parts))


def _csrf_input(context: template.Context) -> str:
    """What `{% csrf_token %}` renders, from the token the context already holds."""
    token = context.get("csrf_token")
    if not token or token == "NOTPROVIDED":
        return ""
    return f'<input type="hidden" name="csrfmiddlewaretoken" value="{_e(token)}">'
