"""What the API answers and accepts; the OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Schema(BaseModel):
    """Plain pydantic models: ninja's Schema reads every field through a Django-aware getter,
    which costs more than the rest of a 500-service list together; the endpoints hand dicts."""


class FieldError(Schema):
    field: str | None
    code: str
    message: str


class ProblemOut(Schema):
    """RFC 9457 problem details (sent as application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] = []


class SpaceOut(Schema):
    id: str
    name: str
    is_default: bool
    role: str


class ProjectOut(Schema):
    id: str
    name: str
    display_name: str
    space: str
    handle: str


class EnvironmentOut(Schema):
    id: str
    name: str
    project: str
    cluster: str
    namespace: str
    is_default: bool
    color: str
    allow_external_tcp: bool


class AddressesOut(Schema):
    access_url: str
    private: str
    external: str
    hosts: list[str]


class ServiceOut(Schema):
    id: str
    name: str
    environment: str
    kind: str
    source: str
    image: str
    branch: str
    port: int
    cpu: str
    memory_mib: int
    disk_mib: int
    replicas: int
    ready_replicas: int
    desired_state: str
    status: str
    reason: str
    revision: int | None
    addresses: AddressesOut
    deployed_by: str | None
    deployed_at: datetime | None


class WaitOut(Schema):
    revision: int
    outcome: Literal["running", "failed", "timeout", "superseded"]
    reason: str


class ServiceStatusOut(ServiceOut):
    wait: WaitOut | None = None


class DeployedOut(Schema):
    service: ServiceOut
    revision: int


class RevisionOut(Schema):
    number: int
    cause: str
    created_at: datetime
    created_by: str | None
    image: str
    branch: str


class ServiceIn(Schema):
    """The deploy modal's fields, as it names them (cpu in vCPU, memory like `512Mi`, env_vars
    as `KEY=value` lines). On a change, a field left out keeps its current value."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    kind: Literal["web", "tcp"] | None = None
    source: Literal["image", "git"] | None = None
    image: str | None = None
    repository_url: str | None = None
    branch: str | None = None
    repository_path: str | None = None
    dockerfile: str | None = None
    build_args: str | None = None
    git_token_secret: str | None = None
    port: int | None = None
    command: str | None = None
    args: str | None = None
    env_vars: str | None = None
    capacity: Literal["on_demand", "spot"] | None = None
    cpu: str | None = None
    memory: str | None = None
    disk: str | None = None
    replicas: int | None = None
    health_check_path: str | None = None
    custom_domains: str | None = None


class RollbackIn(Schema):
    model_config = ConfigDict(extra="forbid")

    revision: int = Field(ge=1, le=2**31 - 1)


class AuditEntryOut(Schema):
    time: datetime
    user: str
    action: str
    project: str
    environment: str
    service: str
    summary: str
    token: str | None


class EnvironmentIn(Schema):
    """The selector's "Create new environment": empty, or a clone of `source` (an environment
    id of the same project; its services are copied, stopped)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    cluster: str
    source: str | None = None


class VariableOut(Schema):
    key: str
    is_secret: bool
    # Null for a secret: secret values are write-only, here as on the page.
    value: str | None
    updated_at: datetime


class VariableIn(Schema):
    model_config = ConfigDict(extra="forbid")

    value: str
    is_secret: bool = True


class VariableSetOut(Schema):
    key: str
    created: bool


class EventOut(Schema):
    type: str
    reason: str
    message: str
    object: str
    service: str | None
    count: int
    last_seen: datetime


class YamlIn(Schema):
    model_config = ConfigDict(extra="forbid")

    yaml: str
    confirm_firewall: bool = False


class YamlOut(Schema):
    yaml: str


class PlannedServiceOut(Schema):
    name: str
    action: Literal["create", "change", "unchanged"]
    changes: list[dict[str, str]]


class YamlPlanOut(Schema):
    services: list[PlannedServiceOut]
    untouched: list[str]
    missing_secrets: list[str]
    opens_firewall: bool
    blocked: list[str]


class YamlAppliedOut(Schema):
    created: list[str]
    changed: list[str]
    unchanged: list[str]
    firewall_changed: bool
