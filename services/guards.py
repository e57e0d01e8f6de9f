"""What refuses a service to start, beyond the allocation (`spaces.resources`) and the disk's
rules (`services.models.disk_rule_errors`): secrets it reads that its environment lacks.

Pure reads: the lifecycle transitions call the checks, the cards call `note_missing_secrets`
to say why a stopped service cannot start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.core.exceptions import ValidationError

from environments.models import EnvironmentVariable
from services.models import Service, spec_secret_keys


class MissingSecrets(ValidationError):
    """Services asked to start that read environment secrets the environment does not have.

    A `ValidationError` like every refusal, so that callers that only show messages need
    nothing more; pages that can link to Secret Management read `keys` and `environment_public_id`.
    """

    def __init__(self, environment_public_id: str, missing: dict[str, list[str]]) -> None:
        self.environment_public_id = environment_public_id
        self.services = sorted(missing)
        self.keys = sorted({key for keys in missing.values() for key in keys})
        super().__init__(missing_secrets_message(self.services, self.keys))


def missing_secrets_message(services: Sequence[str], keys: Sequence[str]) -> str:
    secrets = "secret" if len(keys) == 1 else "secrets"
    them = "it" if len(keys) == 1 else "them"
    return (
        f"Cannot start {', '.join(services)}: this environment has no {secrets} {', '.join(keys)}. "
        f"Set {them} in Settings → Secret Management, then start again."
    )


def missing_secrets(services: Iterable[Service]) -> dict[str, list[str]]:
    """The secrets each service reads and its environment lacks, by service name (only those
    that lack some). One query per environment, and none when no service reads a secret."""
    wanted: dict[int, dict[str, set[str]]] = {}
    for service in services:
        if service.secret_keys:
            wanted.setdefault(service.environment_id, {})[service.name] = service.secret_keys
    missing: dict[str, list[str]] = {}
    for environment_id, readers in wanted.items():
        missing.update(missing_for_specs(environment_id, readers))
    return missing


def missing_for_specs(environment_id: int, readers: dict[str, set[str]]) -> dict[str, list[str]]:
    """`missing_secrets` for specs not saved yet (a YAML file's): the keys each name reads."""
    keys = set().union(*readers.values()) if readers else set()
    if not keys:
        return {}
    have = set(EnvironmentVariable.objects.filter(environment_id=environment_id, key__in=keys).values_list("key", flat=True))
    return {name: sorted(wanted - have) for name, wanted in readers.items() if wanted - have}


def check_secrets(services: Sequence[Service]) -> None:
    """Refuse to start services whose secrets are not set: they would run with the variable
    empty. The services belong to one environment."""
    missing = missing_secrets(services)
    if missing:
        raise MissingSecrets(services[0].environment.public_id, missing)


def note_missing_secrets(services: Iterable[Service]) -> None:
    """Set `missing_secrets` on each stopped service that could not start for want of a secret,
    so that its card says why and links to where they are set."""
    stopped = [s for s in services if s.desired_state == Service.DesiredState.STOPPED]
    missing = missing_secrets(stopped)
    for service in stopped:
        service.missing_secrets = missing.get(service.name, [])


def check_specs_secrets(environment_id: int, environment_public_id: str, specs: Mapping[str, Mapping[str, Any]]) -> None:
    """`check_secrets` for services a YAML file starts, with the specs it gives them (by name)."""
    missing = missing_for_specs(environment_id, {name: spec_secret_keys(dict(spec)) for name, spec in specs.items()})
    if missing:
        raise MissingSecrets(environment_public_id, missing)
