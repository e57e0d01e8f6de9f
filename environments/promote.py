"""Promote: one environment's exported document applied to another of its project, through
the same parse, preview and atomic apply as a dropped YAML file."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from environments.compare import Comparison, compare
from environments.yaml_document import (
    ApplyResult,
    DocumentError,
    Plan,
    apply_document,
    dump,
    export_document,
    parse_document,
    plan,
)
from environments.models import Environment, EnvironmentVariable


class PromoteChanged(Exception):
    """The source changed since the preview: the person reviews the new one first."""


@dataclass
class Preview:
    comparison: Comparison
    plan: Plan | None
    errors: list[str]
    digest: str


def _variables(environment: Environment) -> dict[str, str | None]:
    return {v.key: (None if v.is_secret else v.value) for v in EnvironmentVariable.objects.filter(environment=environment)}


def digest_of(document: dict[str, Any]) -> str:
    """What the preview showed, without the export's timestamp."""
    return hashlib.sha256(json.dumps(document["spec"], sort_keys=True).encode()).hexdigest()


def preview(source: Environment, target: Environment) -> Preview:
    document = export_document(source)
    comparison = compare(document, export_document(target), _variables(source), _variables(target))
    try:
        parsed = parse_document(dump(document).encode(), target)
    except DocumentError as exc:
        return Preview(comparison, None, list(exc.messages), digest_of(document))
    the_plan = plan(target, parsed)
    return Preview(comparison, the_plan, list(the_plan.blocked), digest_of(document))


def promote(
    acting_user: AbstractBaseUser, source: Environment, target: Environment, *, digest: str, confirm_firewall: bool
) -> ApplyResult:
    """Apply the source's document to the target: all of it or nothing (DocumentError or
    ValidationError say why), recorded as one audit entry."""
    if source.project_id != target.project_id or source.pk == target.pk:
        raise ValueError("Promote within one project, between two environments.")
    document = export_document(source)
    if digest_of(document) != digest:
        raise PromoteChanged(f"{source.name} changed since this preview: review the new one before promoting.")
    parsed = parse_document(dump(document).encode(), target)
    return apply_document(acting_user, target, parsed, confirm_firewall=confirm_firewall, promoted_from=source.name)
