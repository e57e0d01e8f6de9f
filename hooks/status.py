"""Commit statuses back to the Git host: the one module that talks to GitHub, GitLab and
Gitea/Forgejo. `StatusError.retryable` says whether trying again may help."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from django.conf import settings

from hooks import payloads

# ale's states → each host's words (GitHub and Gitea share theirs).
_STATES = {
    payloads.GITHUB: {"pending": "pending", "success": "success", "failure": "failure"},
    payloads.GITEA: {"pending": "pending", "success": "success", "failure": "failure"},
    payloads.GITLAB: {"pending": "running", "success": "success", "failure": "failed"},
}
CONTEXT = "ale"


class StatusError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class StatusRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: dict[str, str]


def repository_path(url: str) -> str:
    """`owner/name` (GitLab: `group/sub/name`) of a repository URL, as the APIs address it."""
    key = payloads.repository_key(url)
    return key.split("/", 1)[1] if "/" in key else ""


def default_api_url(provider: str, repository_url: str) -> str:
    host = payloads.repository_key(repository_url).split("/", 1)[0]
    if provider == payloads.GITHUB:
        return "https://api.github.com" if host == "github.com" else f"https://{host}/api/v3"
    if provider == payloads.GITLAB:
        return f"https://{host}/api/v4"
    return f"https://{host}/api/v1"


def build_request(
    provider: str, api_url: str, token: str, repository: str, sha: str, state: str, description: str, target_url: str
) -> StatusRequest:
    """The HTTP request that sets one commit status (pure: tested without a network)."""
    api = api_url.rstrip("/")
    word = _STATES[provider][state]
    if provider == payloads.GITLAB:
        body = {"state": word, "name": CONTEXT, "description": description[:255]}
        if target_url:
            body["target_url"] = target_url
        return StatusRequest(
            "POST", f"{api}/projects/{quote(repository, safe='')}/statuses/{sha}", {"PRIVATE-TOKEN": token}, body
        )
    body = {"state": word, "context": CONTEXT, "description": description[:140]}
    if target_url:
        body["target_url"] = target_url
    auth = f"Bearer {token}" if provider == payloads.GITHUB else f"token {token}"
    headers = {"Authorization": auth}
    if provider == payloads.GITHUB:
        headers["Accept"] = "application/vnd.github+json"
    owner_name = "/".join(quote(part, safe="") for part in repository.split("/"))
    return StatusRequest("POST", f"{api}/repos/{owner_name}/statuses/{sha}", headers, body)


def send(request: StatusRequest) -> None:
    parts = urlsplit(request.url)
    if parts.scheme not in ("https", "http"):
        raise StatusError("The API URL is not http(s).", retryable=False)
    http = urllib.request.Request(
        request.url,
        data=json.dumps(request.body).encode(),
        method=request.method,
        headers={**request.headers, "Content-Type": "application/json", "User-Agent": "ale"},
    )
    try:
        with urllib.request.urlopen(http, timeout=settings.COMMIT_STATUS_TIMEOUT) as response:
            response.read(65536)
    except urllib.error.HTTPError as exc:
        # 429 and 5xx may pass; a 401, 403 or 404 will not without the owner's help.
        retryable = exc.code == 429 or exc.code >= 500
        raise StatusError(f"The Git host answered {exc.code}.", retryable=retryable) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise StatusError(f"The Git host could not be reached: {exc}", retryable=True) from None
