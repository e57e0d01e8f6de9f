"""Webhook payloads from the providers' documentation, abridged to the fields a receiver reads
(and some it does not, so that parsing is tried against the real shape): GitHub's from
octokit/webhooks `payload-examples/api.github.com` (push; pull_request opened, synchronize,
closed), GitLab's from `doc/user/project/integrations/webhook_events.md` (Push Hook, Merge
Request Hook), Gitea's push from docs.gitea.com/features/webhooks and its pull_request in the
same shape (Gitea's API `PullRequestPayload`). Tests sign them with the hook's secret.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import uuid
from typing import Any

GITHUB_REPO = {
    "id": 186853002,
    "name": "Hello-World",
    "full_name": "Codertocat/Hello-World",
    "private": False,
    "html_url": "https://github.com/Codertocat/Hello-World",
    "fork": False,
    "url": "https://api.github.com/repos/Codertocat/Hello-World",
    "statuses_url": "https://api.github.com/repos/Codertocat/Hello-World/statuses/{sha}",
    "git_url": "git://github.com/Codertocat/Hello-World.git",
    "ssh_url": "git@github.com:Codertocat/Hello-World.git",
    "clone_url": "https://github.com/Codertocat/Hello-World.git",
    "svn_url": "https://github.com/Codertocat/Hello-World",
    "default_branch": "master",
}
GITHUB_REPOSITORY_URL = "https://github.com/Codertocat/Hello-World.git"

GITHUB_PUSH: dict[str, Any] = {
    "ref": "refs/tags/simple-tag",
    "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    "after": "0000000000000000000000000000000000000000",
    "created": False,
    "deleted": True,
    "forced": False,
    "base_ref": None,
    "compare": "https://github.com/Codertocat/Hello-World/compare/6113728f27ae...000000000000",
    "commits": [],
    "head_commit": None,
    "repository": {**GITHUB_REPO, "owner": {"name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com", "login": "Codertocat"}},
    "pusher": {"name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com"},
    "sender": {"login": "Codertocat", "id": 21031067, "type": "User"},
}


def github_push(*, branch: str = "master", after: str = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e") -> dict[str, Any]:
    """octokit's example is a tag deletion; a branch push is the same document with
    `ref: refs/heads/<branch>`, `deleted: false` and the new head in `after`."""
    payload = copy.deepcopy(GITHUB_PUSH)
    payload.update(ref=f"refs/heads/{branch}", after=after, deleted=False, created=False)
    return payload


def github_pull_request(action: str = "opened", *, number: int = 2, head_ref: str = "changes",
                        head_sha: str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821", fork: bool = False) -> dict[str, Any]:  # fmt: skip
    head_repo = copy.deepcopy(GITHUB_REPO)
    if fork:
        head_repo.update(
            id=999, full_name="Forker/Hello-World", html_url="https://github.com/Forker/Hello-World", fork=True,
            clone_url="https://github.com/Forker/Hello-World.git", ssh_url="git@github.com:Forker/Hello-World.git",
        )  # fmt: skip
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "url": f"https://api.github.com/repos/Codertocat/Hello-World/pulls/{number}",
            "id": 279147437,
            "html_url": f"https://github.com/Codertocat/Hello-World/pull/{number}",
            "number": number,
            "state": "closed" if action == "closed" else "open",
            "title": "Update the README with new information.",
            "user": {"login": "Codertocat", "id": 21031067},
            "body": "This is a pretty simple change that we need to pull into master.",
            "merged": action == "closed",
            "statuses_url": f"https://api.github.com/repos/Codertocat/Hello-World/statuses/{head_sha}",
            "head": {"label": f"Codertocat:{head_ref}", "ref": head_ref, "sha": head_sha, "repo": head_repo},
            "base": {"label": "Codertocat:master", "ref": "master", "sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
                     "repo": copy.deepcopy(GITHUB_REPO)},  # fmt: skip
        },
        "repository": copy.deepcopy(GITHUB_REPO),
        "sender": {"login": "Codertocat", "id": 21031067},
    }


GITLAB_REPOSITORY_URL = "http://example.com/mike/diaspora.git"

GITLAB_PUSH: dict[str, Any] = {
    "object_kind": "push",
    "event_name": "push",
    "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
    "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "ref": "refs/heads/master",
    "ref_protected": True,
    "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "user_id": 4,
    "user_name": "John Smith",
    "user_username": "jsmith",
    "user_email": "john@example.com",
    "project_id": 15,
    "project": {
        "id": 15,
        "name": "Diaspora",
        "web_url": "http://example.com/mike/diaspora",
        "git_ssh_url": "git@example.com:mike/diaspora.git",
        "git_http_url": "http://example.com/mike/diaspora.git",
        "namespace": "Mike",
        "path_with_namespace": "mike/diaspora",
        "default_branch": "master",
    },
    "repository": {
        "name": "Diaspora",
        "url": "git@example.com:mike/diaspora.git",
        "git_http_url": "http://example.com/mike/diaspora.git",
        "git_ssh_url": "git@example.com:mike/diaspora.git",
    },
    "commits": [{"id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "message": "fixed readme", "title": "fixed readme"}],
    "total_commits_count": 4,
}

_GITLAB_AWESOME = {
    "name": "Awesome Project",
    "web_url": "http://example.com/awesome_space/awesome_project",
    "git_ssh_url": "git@example.com:awesome_space/awesome_project.git",
    "git_http_url": "http://example.com/awesome_space/awesome_project.git",
    "namespace": "Awesome Space",
    "path_with_namespace": "awesome_space/awesome_project",
    "default_branch": "master",
}
GITLAB_MR_REPOSITORY_URL = "http://example.com/awesome_space/awesome_project.git"


def gitlab_merge_request(action: str = "open", *, oldrev: str | None = None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "id": 99,
        "iid": 1,
        "target_branch": "master",
        "source_branch": "ms-viewport",
        "source_project_id": 14,
        "target_project_id": 14,
        "title": "MS-Viewport",
        "state": "opened",
        "url": "http://example.com/diaspora/merge_requests/1",
        "source": copy.deepcopy(_GITLAB_AWESOME),
        "target": copy.deepcopy(_GITLAB_AWESOME),
        "last_commit": {"id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "message": "fixed readme"},
        "action": action,
    }
    if oldrev:
        attributes["oldrev"] = oldrev
    return {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": {"id": 1, "name": "Administrator", "username": "root"},
        "project": {"id": 1, "name": "Gitlab Test", "web_url": "http://example.com/gitlabhq/gitlab-test",
                    "git_ssh_url": "git@example.com:gitlabhq/gitlab-test.git",
                    "git_http_url": "http://example.com/gitlabhq/gitlab-test.git"},  # fmt: skip
        "object_attributes": attributes,
    }


GITEA_REPOSITORY_URL = "http://localhost:3000/gitea/webhooks.git"
_GITEA_REPO = {
    "id": 140,
    "owner": {"id": 1, "login": "gitea", "full_name": "Gitea", "username": "gitea"},
    "name": "webhooks",
    "full_name": "gitea/webhooks",
    "private": False,
    "fork": False,
    "html_url": "http://localhost:3000/gitea/webhooks",
    "ssh_url": "ssh://gitea@localhost:2222/gitea/webhooks.git",
    "clone_url": "http://localhost:3000/gitea/webhooks.git",
    "default_branch": "master",
}

GITEA_PUSH: dict[str, Any] = {
    "ref": "refs/heads/develop",
    "before": "28e1879d029cb852e4844d9c718537df08844e03",
    "after": "bffeb74224043ba2feb48d137756c8a9331c449a",
    "compare_url": "http://localhost:3000/gitea/webhooks/compare/28e1879d029cb852e4844d9c718537df08844e03...bffeb74224043ba2feb48d137756c8a9331c449a",
    "commits": [{"id": "bffeb74224043ba2feb48d137756c8a9331c449a", "message": "Webhooks Yay!",
                 "author": {"name": "Gitea", "email": "someone@gitea.io", "username": "gitea"}}],  # fmt: skip
    "repository": copy.deepcopy(_GITEA_REPO),
    "pusher": {"id": 1, "login": "gitea", "full_name": "Gitea", "email": "someone@gitea.io", "username": "gitea"},
    "sender": {"id": 1, "login": "gitea", "username": "gitea"},
}


def gitea_pull_request(action: str = "opened", *, number: int = 3) -> dict[str, Any]:
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "id": 7,
            "number": number,
            "html_url": f"http://localhost:3000/gitea/webhooks/pulls/{number}",
            "title": "Add the hooks",
            "merged": action == "closed",
            "head": {"label": "feature/hooks", "ref": "feature/hooks", "sha": "bffeb74224043ba2feb48d137756c8a9331c449a",
                     "repo_id": 140, "repo": copy.deepcopy(_GITEA_REPO)},  # fmt: skip
            "base": {"label": "master", "ref": "master", "sha": "28e1879d029cb852e4844d9c718537df08844e03",
                     "repo_id": 140, "repo": copy.deepcopy(_GITEA_REPO)},  # fmt: skip
        },
        "repository": copy.deepcopy(_GITEA_REPO),
        "sender": {"id": 1, "login": "gitea", "username": "gitea"},
    }


# --- signing, as each host does ------------------------------------------------------------------


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def github_headers(secret: str, body: bytes, event: str, delivery: str | None = None) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "HTTP_X_GITHUB_EVENT": event,
        "HTTP_X_GITHUB_DELIVERY": delivery or str(uuid.uuid4()),
        "HTTP_X_HUB_SIGNATURE_256": f"sha256={digest}",
        "HTTP_USER_AGENT": "GitHub-Hookshot/044aadd",
    }


def gitlab_headers(secret: str, event: str, delivery: str | None = None) -> dict[str, str]:
    return {"HTTP_X_GITLAB_EVENT": event, "HTTP_X_GITLAB_TOKEN": secret, "HTTP_X_GITLAB_EVENT_UUID": delivery or str(uuid.uuid4())}


def gitea_headers(secret: str, body: bytes, event: str, delivery: str | None = None) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    delivery = delivery or str(uuid.uuid4())
    # Gitea sends GitHub's and Gogs' headers too.
    return {
        "HTTP_X_GITEA_EVENT": event, "HTTP_X_GITEA_DELIVERY": delivery, "HTTP_X_GITEA_SIGNATURE": digest,
        "HTTP_X_GITHUB_EVENT": event, "HTTP_X_GITHUB_DELIVERY": delivery, "HTTP_X_GOGS_EVENT": event,
    }  # fmt: skip


def as_lower_headers(meta: dict[str, str]) -> dict[str, str]:
    """The META-style keys above as the lowercased header names `payloads` reads."""
    return {key[5:].replace("_", "-").lower(): value for key, value in meta.items()}
