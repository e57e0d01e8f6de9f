"""Signatures, events and git's ref rules, on the providers' documented payloads (pure)."""

from __future__ import annotations

import json

import pytest

from hooks import payloads
from tests.hooks import examples as ex

SECRET = "s3cret-of-the-hook"


def test_it_accepts_each_hosts_signature_and_refuses_a_wrong_one():
    body = ex.body_of(ex.github_push())
    github = ex.as_lower_headers(ex.github_headers(SECRET, body, "push"))
    assert payloads.provider_of(github) == payloads.GITHUB
    assert payloads.signature_ok(payloads.GITHUB, github, body, SECRET)
    assert not payloads.signature_ok(payloads.GITHUB, github, body, "another secret")
    assert not payloads.signature_ok(payloads.GITHUB, github, body + b" ", SECRET)

    gitlab = ex.as_lower_headers(ex.gitlab_headers(SECRET, "Push Hook"))
    assert payloads.provider_of(gitlab) == payloads.GITLAB
    assert payloads.signature_ok(payloads.GITLAB, gitlab, b"{}", SECRET)
    assert not payloads.signature_ok(payloads.GITLAB, {**gitlab, "x-gitlab-token": "guess"}, b"{}", SECRET)

    body = ex.body_of(ex.GITEA_PUSH)
    gitea = ex.as_lower_headers(ex.gitea_headers(SECRET, body, "push"))
    # Gitea also sends X-GitHub-Event: it is still read as Gitea, with Gitea's signature.
    assert payloads.provider_of(gitea) == payloads.GITEA
    assert payloads.signature_ok(payloads.GITEA, gitea, body, SECRET)
    assert not payloads.signature_ok(payloads.GITEA, {**gitea, "x-gitea-signature": "0" * 64}, body, SECRET)


def test_it_reads_a_push_from_each_host():
    push = payloads.parse(payloads.GITHUB, "push", ex.body_of(ex.github_push(branch="master")))
    assert push == payloads.Push(
        repository_urls=[ex.GITHUB_REPOSITORY_URL, "https://github.com/Codertocat/Hello-World", "git@github.com:Codertocat/Hello-World.git"],
        branch="master", sha="f95f852bd8fca8fcc58a9a2d6c842781e32a215e", pusher="Codertocat",
    )  # fmt: skip
    push = payloads.parse(payloads.GITLAB, "push", ex.body_of(ex.GITLAB_PUSH))
    assert (push.branch, push.short_sha, push.pusher) == ("master", "da15608", "jsmith")
    assert ex.GITLAB_REPOSITORY_URL in push.repository_urls
    push = payloads.parse(payloads.GITEA, "push", ex.body_of(ex.GITEA_PUSH))
    assert (push.branch, push.short_sha, push.pusher) == ("develop", "bffeb74", "gitea")
    assert ex.GITEA_REPOSITORY_URL in push.repository_urls


def test_it_ignores_tags_and_deleted_branches():
    # octokit's push example as published: a deleted tag.
    assert payloads.parse(payloads.GITHUB, "push", ex.body_of(ex.GITHUB_PUSH)) is None
    deleted = {**ex.github_push(), "deleted": True}
    assert payloads.parse(payloads.GITHUB, "push", ex.body_of(deleted)) is None


def test_it_reads_pull_and_merge_requests():
    opened = payloads.parse(payloads.GITHUB, "pull_request", ex.body_of(ex.github_pull_request("opened")))
    assert (opened.action, opened.number, opened.head_branch, opened.is_fork) == ("open", 2, "changes", False)
    assert opened.url == "https://github.com/Codertocat/Hello-World/pull/2"
    assert payloads.parse(payloads.GITHUB, "pull_request", ex.body_of(ex.github_pull_request("synchronize"))).action == "sync"
    assert payloads.parse(payloads.GITHUB, "pull_request", ex.body_of(ex.github_pull_request("closed"))).action == "close"
    assert payloads.parse(payloads.GITHUB, "pull_request", ex.body_of(ex.github_pull_request("labeled"))).action == "other"
    fork = payloads.parse(payloads.GITHUB, "pull_request", ex.body_of(ex.github_pull_request(fork=True)))
    assert fork.is_fork and fork.head_repository_url == "https://github.com/Forker/Hello-World.git"

    mr = payloads.parse(payloads.GITLAB, "pull_request", ex.body_of(ex.gitlab_merge_request("open")))
    assert (mr.action, mr.number, mr.head_branch, mr.is_fork) == ("open", 1, "ms-viewport", False)
    assert ex.GITLAB_MR_REPOSITORY_URL in mr.base_repository_urls
    # An update without new commits (a title) builds nothing; with `oldrev` it is new commits.
    assert payloads.parse(payloads.GITLAB, "pull_request", ex.body_of(ex.gitlab_merge_request("update"))).action == "other"
    updated = ex.gitlab_merge_request("update", oldrev="95790bf891e76fee5e1747ab589903a6a1f80f22")
    assert payloads.parse(payloads.GITLAB, "pull_request", ex.body_of(updated)).action == "sync"
    assert payloads.parse(payloads.GITLAB, "pull_request", ex.body_of(ex.gitlab_merge_request("merge"))).action == "close"

    pr = payloads.parse(payloads.GITEA, "pull_request", ex.body_of(ex.gitea_pull_request("synchronized")))
    assert (pr.action, pr.number, pr.head_branch) == ("sync", 3, "feature/hooks")


@pytest.mark.parametrize(
    "name",
    ["--upload-pack=touch /tmp/x", "a..b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[b", "a\\b", ".hidden", "x/.y",
     "a.lock", "a/", "/a", "a//b", "a.", "a@{1}", "@", "a\x00b", "a\nb", "x" * 201, ""],
)  # fmt: skip
def test_it_refuses_branch_names_git_refuses(name):
    assert not payloads.valid_branch(name)
    body = ex.body_of(ex.github_pull_request(head_ref=name))
    with pytest.raises(payloads.PayloadError):
        payloads.parse(payloads.GITHUB, "pull_request", body)


# `$(reboot)` is a name git accepts: it is safe because it is only ever data (a field, an
# argument of the build), never a shell's input.
@pytest.mark.parametrize("name", ["main", "feature/hooks", "release-1.2", "user/jane/fix_it", "ms-viewport", "$(reboot)"])
def test_it_accepts_ordinary_branch_names(name):
    assert payloads.valid_branch(name)


def test_it_refuses_a_push_of_a_bad_branch_name_and_a_body_that_is_not_json():
    with pytest.raises(payloads.PayloadError):
        payloads.parse(payloads.GITHUB, "push", ex.body_of(ex.github_push(branch="a..b")))
    with pytest.raises(payloads.PayloadError):
        payloads.parse(payloads.GITHUB, "push", b"not json")
    with pytest.raises(payloads.PayloadError):
        payloads.parse(payloads.GITHUB, "push", json.dumps([1, 2]).encode())


def test_two_urls_of_one_repository_have_one_key():
    key = payloads.repository_key
    assert key("https://github.com/Codertocat/Hello-World.git") == "github.com/codertocat/hello-world"
    assert key("git@github.com:Codertocat/Hello-World.git") == key("https://github.com/codertocat/hello-world/")
    assert key("ssh://git@example.com/mike/diaspora.git") == key("http://example.com/mike/diaspora")
    assert key("file:///etc/passwd") == "" and key("not a url") == ""


@pytest.mark.parametrize(
    "url",
    ["https://github.com/Forker/Hello-World.git#refs/heads/evil", "https://user:pw@github.com/Forker/Hello-World.git",
     "https://github.com/Forker/Hello-World.git?x=1", "ssh://git@github.com/Forker/Hello-World.git", "file:///etc/passwd"],
)  # fmt: skip
def test_a_fork_whose_repository_url_is_not_plain_https_is_refused(url):
    payload = ex.github_pull_request(fork=True)
    payload["pull_request"]["head"]["repo"].update(clone_url=url, html_url=url)
    with pytest.raises(payloads.PayloadError):
        payloads.parse(payloads.GITHUB, "pull_request", ex.body_of(payload))
