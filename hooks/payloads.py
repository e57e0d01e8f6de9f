"""Webhook deliveries from GitHub, GitLab and Gitea/Forgejo: signatures and payloads.

Pure functions: bytes and headers in, values out. The signature is checked on the raw body
before anything parses it. Branch names and repository URLs from a payload are data: they are
checked against git's ref rules here and only ever passed on as values (model fields, Job
arguments), never through a shell.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

GITHUB, GITLAB, GITEA = "github", "gitlab", "gitea"


class PayloadError(ValueError):
    """The delivery is signed but says nothing ale can act on (or says it wrongly)."""


def provider_of(headers: dict[str, str]) -> str | None:
    """Which Git host sent the delivery, from its headers (case-insensitive keys, lower)."""
    # Gitea also sends GitHub's headers, so it is asked first.
    if "x-gitea-event" in headers or "x-forgejo-event" in headers:
        return GITEA
    if "x-gitlab-event" in headers:
        return GITLAB
    if "x-github-event" in headers:
        return GITHUB
    return None


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(provider: str, headers: dict[str, str], body: bytes, secret: str) -> bool:
    """The delivery's proof that it knows the secret, compared in constant time."""
    if provider == GITHUB:
        given = headers.get("x-hub-signature-256", "")
        return hmac.compare_digest(given.encode(), f"sha256={_hmac_hex(secret, body)}".encode())
    if provider == GITLAB:
        # GitLab sends the secret itself as a token (over TLS), no HMAC.
        return hmac.compare_digest(headers.get("x-gitlab-token", "").encode(), secret.encode())
    if provider == GITEA:
        given = headers.get("x-gitea-signature") or headers.get("x-forgejo-signature") or ""
        return hmac.compare_digest(given.encode(), _hmac_hex(secret, body).encode())
    return False


def event_of(provider: str, headers: dict[str, str]) -> str:
    """"push", "pull_request", or what else the host calls it (ignored)."""
    if provider == GITHUB:
        return headers.get("x-github-event", "")
    if provider == GITEA:
        return headers.get("x-gitea-event") or headers.get("x-forgejo-event") or ""
    return {"Push Hook": "push", "Merge Request Hook": "pull_request"}.get(headers.get("x-gitlab-event", ""), "other")


def delivery_id_of(provider: str, headers: dict[str, str], body: bytes) -> str:
    """The host's id of the delivery; a redelivery from the host's page keeps it."""
    name = {GITHUB: "x-github-delivery", GITLAB: "x-gitlab-event-uuid", GITEA: "x-gitea-delivery"}[provider]
    given = headers.get(name, "").strip()[:200]
    # No id (an old GitLab): the body itself identifies the delivery.
    return given or f"sha256:{hashlib.sha256(body).hexdigest()}"


# --- git's ref rules (git check-ref-format) ------------------------------------------------------

_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def valid_branch(name: str) -> bool:
    """Whether `name` is a branch name git would accept (`git check-ref-format --branch`),
    and one that cannot be mistaken for an option."""
    if not name or len(name) > 200 or name.startswith("-") or name == "@":
        return False
    if _REF_FORBIDDEN.search(name) or ".." in name or "@{" in name or "//" in name:
        return False
    if name.startswith("/") or name.endswith("/") or name.endswith("."):
        return False
    return all(part and not part.startswith(".") and not part.endswith(".lock") for part in name.split("/"))


def branch_of_ref(ref: str) -> str:
    """`refs/heads/<branch>` → the branch; a tag or anything else → PayloadError."""
    if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
        raise PayloadError("Not a branch.")
    branch = ref[len("refs/heads/"):]
    if not valid_branch(branch):
        raise PayloadError("Not a valid branch name.")
    return branch


_SCP_LIKE = re.compile(r"^[\w.-]+@([\w.-]+):(.+)$")


def repository_key(url: str) -> str:
    """`host/owner/name` of a repository URL, whatever its form (https, ssh, scp-like, with or
    without `.git`), lowercased: two URLs of one repository give the same key."""
    url = (url or "").strip()
    match = _SCP_LIKE.match(url)
    if match:
        host, path = match.group(1), match.group(2)
    else:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http", "ssh", "git") or not parts.hostname:
            return ""
        host, path = parts.hostname, parts.path
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[:-4]
    if not path or ".." in path or any(c.isspace() for c in path):
        return ""
    return f"{host.lower()}/{path.lower()}"


def storable_url(url: str) -> bool:
    """A repository URL ale may build from (a fork's, which becomes a service's field and an
    argument of the builder): plain http(s), no credentials, query or fragment (`#` would
    change the builder's ref)."""
    parts = urlsplit(url)
    return (
        parts.scheme in ("https", "http") and bool(parts.hostname) and not parts.username and not parts.password
        and not parts.query and not parts.fragment and "#" not in url and "?" not in url
        and bool(repository_key(url))
    )  # fmt: skip


def _valid_url(value: Any) -> str:
    if isinstance(value, str) and len(value) <= 500 and repository_key(value):
        return value
    return ""


def _sha(value: Any) -> str:
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{7,64}", value):
        return value
    return ""


def _text(value: Any, limit: int = 100) -> str:
    text = value if isinstance(value, str) else ""
    return "".join(c for c in text if c.isprintable())[:limit]


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


# --- events --------------------------------------------------------------------------------------


@dataclass
class Push:
    repository_urls: list[str]
    branch: str
    sha: str
    pusher: str

    @property
    def short_sha(self) -> str:
        return self.sha[:7]


@dataclass
class PullRequest:
    action: str  # "open" | "sync" | "close" | "other"
    number: int
    url: str
    head_branch: str
    head_sha: str
    head_repository_url: str
    base_repository_urls: list[str] = field(default_factory=list)
    is_fork: bool = False


def _urls(*values: Any) -> list[str]:
    return [url for url in (_valid_url(v) for v in values) if url]


def parse(provider: str, event: str, body: bytes) -> Push | PullRequest | None:
    """The event a signed delivery carries; None for events ale does not act on (a ping, a
    tag push, a branch deletion). PayloadError when the JSON is not what the host sends."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise PayloadError("The body is not JSON.") from None
    if not isinstance(data, dict):
        raise PayloadError("The body is not a JSON object.")
    if event == "push":
        return _push(provider, data)
    if event == "pull_request":
        return _pull_request(provider, data)
    return None


def _push(provider: str, data: dict[str, Any]) -> Push | None:
    ref = data.get("ref")
    if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
        return None
    branch = branch_of_ref(ref)
    if provider == GITLAB:
        sha = _sha(data.get("checkout_sha")) or _sha(data.get("after"))
        pusher = _text(data.get("user_username") or data.get("user_name"))
        project = data.get("project") or {}
        urls = _urls(_dig(project, "git_http_url"), _dig(project, "git_ssh_url"), _dig(project, "web_url"))
    else:
        if data.get("deleted") is True:
            return None
        sha = _sha(data.get("after"))
        pusher = _text(_dig(data, "pusher", "name") or _dig(data, "pusher", "login") or _dig(data, "pusher", "username"))
        repo = data.get("repository") or {}
        urls = _urls(_dig(repo, "clone_url"), _dig(repo, "html_url"), _dig(repo, "ssh_url"))
    if not sha or set(sha) == {"0"}:
        return None
    if not urls:
        raise PayloadError("No repository URL in the push.")
    return Push(repository_urls=urls, branch=branch, sha=sha, pusher=pusher or "unknown")


_GITHUB_ACTIONS = {"opened": "open", "reopened": "open", "synchronize": "sync", "synchronized": "sync", "closed": "close"}
_GITLAB_ACTIONS = {"open": "open", "reopen": "open", "update": "sync", "close": "close", "merge": "close"}


def _pull_request(provider: str, data: dict[str, Any]) -> PullRequest:
    if provider == GITLAB:
        attrs = data.get("object_attributes") or {}
        action = _GITLAB_ACTIONS.get(_text(attrs.get("action")), "other")
        if action == "sync" and not attrs.get("oldrev"):
            # An update without new commits: a title or label change.
            action = "other"
        number = attrs.get("iid")
        url = attrs.get("url")
        head_branch = attrs.get("source_branch")
        head_sha = _sha(_dig(attrs, "last_commit", "id"))
        head_urls = _urls(_dig(attrs, "source", "git_http_url"), _dig(data, "project", "git_http_url"))
        base_urls = _urls(_dig(attrs, "target", "git_http_url"), _dig(attrs, "target", "git_ssh_url"),
                          _dig(data, "project", "git_http_url"), _dig(data, "project", "web_url"))  # fmt: skip
        is_fork = attrs.get("source_project_id") != attrs.get("target_project_id")
    else:
        pr = data.get("pull_request") or {}
        action = _GITHUB_ACTIONS.get(_text(data.get("action")), "other")
        number = data.get("number") or pr.get("number")
        url = pr.get("html_url")
        head_branch = _dig(pr, "head", "ref")
        head_sha = _sha(_dig(pr, "head", "sha"))
        head_urls = _urls(_dig(pr, "head", "repo", "clone_url"), _dig(pr, "head", "repo", "html_url"))
        base_urls = _urls(_dig(pr, "base", "repo", "clone_url"), _dig(pr, "base", "repo", "html_url"),
                          _dig(pr, "base", "repo", "ssh_url"), _dig(data, "repository", "clone_url"))  # fmt: skip
        head_key = repository_key(head_urls[0]) if head_urls else ""
        is_fork = not head_key or head_key not in {repository_key(u) for u in base_urls}
    if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 10**9:
        raise PayloadError("No request number.")
    if not isinstance(head_branch, str) or not valid_branch(head_branch):
        raise PayloadError("Not a valid branch name.")
    url = _valid_url(url) or ""
    if not url.startswith(("https://", "http://")):
        raise PayloadError("No request URL.")
    if not base_urls or not head_urls:
        raise PayloadError("No repository URL in the request.")
    head_urls = [u for u in head_urls if storable_url(u)]
    if not head_urls:
        raise PayloadError("The request's repository URL is not a plain http(s) URL.")
    return PullRequest(
        action=action, number=number, url=url, head_branch=head_branch, head_sha=head_sha,
        head_repository_url=head_urls[0], base_repository_urls=base_urls, is_fork=is_fork,
    )  # fmt: skip
