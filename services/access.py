"""Who may see and change which service. A service is its environment's: a member of the
environment's space may do anything to it; everyone else gets 404, as for a missing one."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

from environments.access import environments_for_user
from environments.models import Environment
from spaces.access import is_owner
from services.metrics import attach_card_metrics
from services.models import Service

# What a card renders beyond the service row itself: loaded with it, never per card.
CARD_RELATED = ("environment__project__space", "environment__cluster", "deployed_by")


def services_for_user(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Service]:
    return Service.objects.filter(environment__in=environments_for_user(user))


def get_service_for_user(user: AbstractBaseUser | AnonymousUser, public_id: str) -> Service:
    """The service with what its card and page need, in one query."""
    try:
        return services_for_user(user).select_related(*CARD_RELATED).get(public_id=public_id)
    except Service.DoesNotExist:
        raise Http404("No such service.") from None


def cards_for_environment(environment: Environment) -> list[Service]:
    """The Information tab's cards: one query however many services there are.

    Through the reverse manager each service shares the `environment` object already loaded
    (with its project, space and cluster), so no card reads it again.
    """
    return attach_card_metrics(list(environment.services.select_related("deployed_by", "cloned_by").order_by("name")))


def card_page(environment: Environment, start: int, stop: int) -> tuple[list[Service], bool]:
    """Cards `start` to `stop` of the Information tab, in its order, and whether more follow.

    One query: it fetches one row beyond `stop`, so that knowing whether another page exists
    costs no `count()`.
    """
    rows = list(environment.services.select_related("deployed_by", "cloned_by").order_by("name")[start : stop + 1])
    # Sparklines and sentences of the whole page in three queries, not three per card.
    return attach_card_metrics(rows[: stop - start]), len(rows) > stop - start


def may_open_terminal(user: AbstractBaseUser | AnonymousUser, environment: Environment) -> bool:
    """The environment's terminal setting: all members, or the space's owners only."""
    if environment.terminal_access == Environment.TerminalAccess.OWNERS_ONLY:
        # The environment comes with its project and space (see `get_environment_for_user` and
        # `CARD_RELATED`): asking whether the user owns the space costs one query.
        return is_owner(user, environment.project.space)
    return user.is_authenticated
