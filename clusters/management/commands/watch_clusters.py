"""`manage.py watch_clusters`: keep service statuses and events in step with the clusters."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ale_site.connections import connections_kept
from clusters.client import KubeClient, client_for
from clusters.errors import ClusterError
from clusters.leader import LeaderElector
from clusters.models import Cluster
from clusters.watcher import WatchManager


def lease_client(cluster_name: str) -> KubeClient:
    """The client of the cluster that holds the Lease: a registered Cluster by name, or ale's
    own cluster through the pod's service account (an unsaved in-cluster record, so that the
    election does not depend on what operations registered)."""
    if cluster_name:
        try:
            return client_for(Cluster.objects.get(name=cluster_name))
        except Cluster.DoesNotExist:
            raise CommandError(f"no cluster named {cluster_name!r} to hold the watcher's lease") from None
    return client_for(Cluster(name="this", connection=Cluster.Connection.IN_CLUSTER))


class Command(BaseCommand):
    help = "Watch every cluster that has environments; write statuses and events, push live cards."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--refresh-interval",
            type=float,
            default=30.0,
            help="Seconds between two readings of the cluster list (default 30).",
        )

        parser.add_argument(
            "--leader-elect",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Watch only while holding the Lease WATCHER_LEASE_NAMESPACE/WATCHER_LEASE_NAME, so "
            "that replicas take over from each other (default: on when POD_NAMESPACE is set).",
        )
        parser.add_argument(
            "--lease-cluster",
            default=None,
            help="Name of the registered cluster holding the Lease (default WATCHER_LEASE_CLUSTER; "
            "empty: this pod's own cluster through its service account).",
        )

    def handle(
        self,
        *args: Any,
        refresh_interval: float,
        leader_elect: bool | None = None,
        lease_cluster: str | None = None,
        **options: Any,
    ) -> None:
        if leader_elect is None:
            leader_elect = bool(os.environ.get("POD_NAMESPACE"))
        elector = self._elector(lease_cluster) if leader_elect else None
        stop = threading.Event()

        def request_stop(signum: int, frame: object) -> None:
            # A second signal while stopping falls through to the default: a forced exit.
            signal.signal(signum, signal.SIG_DFL)
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        # The writers keep their database connections from one write to the next.
        with connections_kept():
            if elector is None:
                self.stdout.write("Watching clusters; SIGTERM or Ctrl-C stops.")
                WatchManager(refresh_interval=refresh_interval).run(stop)
                self.stdout.write("Stopped.")
                return
            self.stdout.write(
                f"Waiting for the lease {elector.namespace}/{elector.name} as {elector.identity}; SIGTERM or Ctrl-C stops."
            )
            # Only the holder watches; `lost` ends its WatchManager when the lease goes elsewhere.
            elector.run(stop, lambda lost: WatchManager(refresh_interval=refresh_interval).run(lost))
        self.stdout.write("Stopped.")

    def _elector(self, lease_cluster: str | None) -> LeaderElector:
        """The elector, once its cluster is known to be usable: a missing cluster or an unusable
        configuration fails here, loudly, before any signal handler is installed."""
        name = settings.WATCHER_LEASE_CLUSTER if lease_cluster is None else lease_cluster
        try:
            lease_client(name)
        except ClusterError as exc:
            raise CommandError(f"cannot use the cluster holding the watcher's lease: {exc.user_message}") from exc
        return LeaderElector(
            lambda: lease_client(name),
            name=settings.WATCHER_LEASE_NAME,
            namespace=settings.WATCHER_LEASE_NAMESPACE,
            lease_seconds=settings.WATCHER_LEASE_SECONDS,
        )
