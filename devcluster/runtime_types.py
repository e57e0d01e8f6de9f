from __future__ import annotations
from dataclasses import dataclass
@dataclass
class ContainerRun:
    """One run of one container of a pod: what the container 'prints' depends only on these fields."""
    pod: str                  # pod name
    container: str            # container name
    image: str
    env: dict[str, str]       # literal env values of the container spec
    args: list[str]           # command + args of the container spec
    started_at: float         # epoch seconds
    finished_at: float | None = None   # None while running
    exit_code: int | None = None
    is_job: bool = False      # container of a Job's pod
