"""The watcher's leader election: Lease-based electors against the devcluster, for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from clusters.client import KubeClient, client_for
from clusters.leader import LEASE_API_VERSION, LeaderElector
from clusters.models import Cluster
from environments.tasks import reconcile_environment
from tests.factories import make_project, make_space
from tests.fixtures.celery_worker import BASE_DIR, database_url

LEASE_SECONDS = 2
PROCESS_LEASE_SECONDS = 3


@pytest.fixture
def kube(kubeconfig_path, settings) -> KubeClient:
    settings.DEVCLUSTER_KUBECONFIG = kubeconfig_path
    return client_for(Cluster(name="local", connection="devcluster"))


def make_elector(kube: KubeClient | Callable[[], KubeClient], namespace: str, identity: str) -> LeaderElector:
    return LeaderElector(
        kube, name="ale-watcher", namespace=namespace, identity=identity,
        lease_seconds=LEASE_SECONDS, renew_deadline=1.2, retry_period=0.2,
    )


class Candidate:
    """An elector running in a thread, whose work records when it acts."""

    def __init__(self, elector: LeaderElector) -> None:
        self.elector = elector
        self.stop = threading.Event()
        self.acting = threading.Event()
        self.started_at: float | None = None
        self.terms = 0
        self.thread = threading.Thread(target=elector.run, args=(self.stop, self.work), daemon=True)

    def work(self, lost: threading.Event) -> None:
        self.terms += 1
        self.started_at = time.monotonic()
        self.acting.set()
        lost.wait()
        self.acting.clear()

    def start(self) -> Candidate:
        self.thread.start()
        return self

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def candidates() -> Iterator[list[Candidate]]:
    started: list[Candidate] = []
    yield started
    for candidate in started:
        candidate.stop.set()
    for candidate in started:
        candidate.thread.join(10)


def wait_until(condition, timeout: float, message: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s: {message}")
        time.sleep(0.02)
    return time.monotonic() - start


def test_it_lets_only_one_of_two_act(kube, namespace, candidates):
    first = Candidate(make_elector(kube, namespace, "watcher-a")).start()
    second = Candidate(make_elector(kube, namespace, "watcher-b")).start()
    candidates += [first, second]
    wait_until(lambda: first.acting.is_set() or second.acting.is_set(), 5, "a leader")
    # Several renewals later, still exactly one acts and the Lease names it.
    for _ in range(15):
        assert first.acting.is_set() != second.acting.is_set()
        time.sleep(0.1)
    leader = first if first.acting.is_set() else second
    lease = kube.get(LEASE_API_VERSION, "Lease", "ale-watcher", namespace)
    assert lease["spec"]["holderIdentity"] == leader.elector.identity
    assert lease["spec"]["leaseDurationSeconds"] == LEASE_SECONDS
    assert leader.terms == 1


def test_it_hands_over_within_the_lease_when_the_leader_dies(kube, namespace, candidates):
    first = Candidate(make_elector(kube, namespace, "watcher-a")).start()
    candidates.append(first)
    wait_until(first.acting.is_set, 5, "the first leader")
    second = Candidate(make_elector(kube, namespace, "watcher-b")).start()
    candidates.append(second)
    time.sleep(0.5)
    assert not second.acting.is_set()

    # A crash: the leader stops renewing without releasing (its process is gone).
    first.elector.release = lambda: None  # type: ignore[method-assign]
    first.elector.try_acquire_or_renew = lambda: False  # type: ignore[method-assign]
    took = wait_until(second.acting.is_set, LEASE_SECONDS + 1.5, "the second to take over")
    # The old leader stopped acting first (renew deadline < lease), so they never overlapped.
    assert not first.acting.is_set()
    assert took >= 1.0
    lease = kube.get(LEASE_API_VERSION, "Lease", "ale-watcher", namespace)
    assert lease["spec"]["holderIdentity"] == "watcher-b"
    assert lease["spec"]["leaseTransitions"] == 1


def test_it_releases_on_a_clean_stop_so_the_next_takes_over_at_once(kube, namespace, candidates):
    first = Candidate(make_elector(kube, namespace, "watcher-a")).start()
    candidates.append(first)
    wait_until(first.acting.is_set, 5, "the first leader")
    second = Candidate(make_elector(kube, namespace, "watcher-b")).start()
    candidates.append(second)
    time.sleep(0.3)
    first.halt()
    assert not first.acting.is_set()
    took = wait_until(second.acting.is_set, 1.0, "the second to take over a released lease")
    assert took < LEASE_SECONDS


def test_it_does_not_take_a_lease_that_is_being_renewed(kube, namespace):
    holder = make_elector(kube, namespace, "watcher-a")
    other = make_elector(kube, namespace, "watcher-b")
    assert holder.try_acquire_or_renew()
    deadline = time.monotonic() + LEASE_SECONDS * 1.5
    while time.monotonic() < deadline:
        assert holder.try_acquire_or_renew()
        assert not other.try_acquire_or_renew()
        time.sleep(0.2)
    assert other.observed_holder == "watcher-a"


def test_it_loses_a_write_race_on_resource_version(kube, namespace):
    first = make_elector(kube, namespace, "watcher-a")
    assert first.try_acquire_or_renew()
    first.release()
    stale = kube.get(LEASE_API_VERSION, "Lease", "ale-watcher", namespace)
    # Someone renews between our read and our write: the compare-and-swap refuses ours.
    assert first.try_acquire_or_renew()
    # The elector takes a client factory: this one's reads return the old copy.
    second = make_elector(lambda: _StaleReads(kube, stale), namespace, "watcher-b")  # type: ignore[arg-type, return-value]
    assert not second.try_acquire_or_renew()
    assert kube.get(LEASE_API_VERSION, "Lease", "ale-watcher", namespace)["spec"]["holderIdentity"] == "watcher-a"


class _StaleReads:
    """A client whose reads return an old copy of the Lease, writes going through."""

    def __init__(self, kube: KubeClient, stale: dict) -> None:
        self.kube, self.stale = kube, stale

    def get(self, *args: object, **kwargs: object) -> dict:
        return self.stale

    def create(self, manifest: dict) -> dict:
        return self.kube.create(manifest)

    def replace(self, manifest: dict) -> dict:
        return self.kube.replace(manifest)


def test_it_refuses_timings_where_two_could_act():
    with pytest.raises(ValueError):
        LeaderElector(lambda: None, name="x", namespace="y", lease_seconds=2, renew_deadline=3, retry_period=0.2)


# --- two `watch_clusters --leader-elect` processes --------------------------------------------


class WatcherProcess:
    """`manage.py watch_clusters --leader-elect` in a process of its own, on the test database."""

    def __init__(self, name: str, env: dict[str, str], log_dir) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "watch_clusters", "--leader-elect", "--lease-cluster", "local",
                 "--refresh-interval", "0.5"],
                cwd=BASE_DIR, env={**env, "POD_NAME": name}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def acting(self) -> bool:
        # The WatchManager's first line once it runs: only a leader gets that far.
        return "cluster local: watching" in self.log()

    def end(self, sig: int) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
        self.process.wait(15)


@pytest.fixture
def watcher_env(transactional_db, kubeconfig_path, namespace, owner, monkeypatch) -> dict[str, str]:
    # The environment only needs to exist for the watcher; no worker is there to reconcile it.
    monkeypatch.setattr(reconcile_environment, "delay", lambda *args, **kwargs: None)
    make_project(make_space(owner=owner, name="leaders"), by=owner, name="leaders")
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DEVCLUSTER_KUBECONFIG": kubeconfig_path,
        "WATCHER_LEASE_NAMESPACE": namespace,
        "WATCHER_LEASE_NAME": "ale-watcher",
        # A second more than the in-process tests: two Django processes on a busy machine must
        # not miss a renewal deadline by starvation alone.
        "WATCHER_LEASE_SECONDS": str(PROCESS_LEASE_SECONDS),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def watchers(watcher_env, tmp_path) -> Iterator[Callable[[str], WatcherProcess]]:
    started: list[WatcherProcess] = []

    def start(name: str) -> WatcherProcess:
        started.append(WatcherProcess(name, watcher_env, tmp_path))
        return started[-1]

    yield start
    for proc in started:
        proc.end(signal.SIGKILL)


def test_it_runs_one_acting_watch_clusters_of_two_and_fails_over(kube, namespace, watchers):
    # Started together, as a Deployment's two replicas are: exactly one wins.
    pair = [watchers("watcher-a"), watchers("watcher-b")]
    wait_until(lambda: any(p.acting for p in pair), 20, "a watcher to watch:\n" + "\n".join(p.log() for p in pair))
    wait_until(lambda: all("Waiting for the lease" in p.log() for p in pair), 20, "both to run")
    time.sleep(PROCESS_LEASE_SECONDS + 0.5)
    leader, follower = pair if pair[0].acting else pair[::-1]
    assert not follower.acting, follower.log()
    holder = kube.get(LEASE_API_VERSION, "Lease", "ale-watcher", namespace)["spec"]["holderIdentity"]
    assert holder.startswith(f"{leader.name}_")

    # The leader's process dies without a word: the other takes over once the lease runs out.
    leader.end(signal.SIGKILL)
    killed = time.monotonic()
    # Within the lease, plus a retry period and the moment it takes to start watching.
    wait_until(lambda: follower.acting, PROCESS_LEASE_SECONDS + 2, f"the other to take over:\n{follower.log()}")
    holder = kube.get(LEASE_API_VERSION, "Lease", "ale-watcher", namespace)["spec"]["holderIdentity"]
    assert holder.startswith(f"{follower.name}_")

    # A clean stop releases the lease.
    follower.end(signal.SIGTERM)
    assert follower.process.returncode == 0, follower.log()
    assert not kube.get(LEASE_API_VERSION, "Lease", "ale-watcher", namespace)["spec"].get("holderIdentity")


@pytest.mark.django_db
def test_it_refuses_to_elect_without_a_usable_lease_cluster(monkeypatch):
    from django.core.management import CommandError, call_command

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    # Outside a pod, "this cluster" has no service account to use.
    with pytest.raises(CommandError, match="not running inside it"):
        call_command("watch_clusters", "--leader-elect")
    with pytest.raises(CommandError, match="no cluster named 'nowhere'"):
        call_command("watch_clusters", "--leader-elect", "--lease-cluster", "nowhere")
