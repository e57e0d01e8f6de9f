"""The Log view and Terminal pages, and the log download.

The pages make no Kubernetes call: pods and containers arrive over their websockets. The
download is the one plain HTTP endpoint that reads the cluster, streamed as it is read so
that a large log never sits in memory.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from clusters.client import KubeClient, client_for
from clusters.errors import ClusterError
from clusters.streams import in_thread
from services.access import get_service_for_user, may_open_terminal
from services.builds import build_for, list_build_pods
from services.models import Build, Service
from services.streams.log_reader import DEFAULT_TAIL, MAX_TAIL, Lines, LogOptions, LogReader, Status
from services.streams.pipe import Pipe
from services.streams.pods import MAX_PODS, PodInfo, list_service_pods, short_pod_name
from services.streams.timestamps import split_stamp
from spaces.http import HtmxHttpRequest
from spaces.sidebar import sidebar_context

DOWNLOAD_PIPE_CAPACITY = 8  # reads of at most 256 KiB each


def _page_context(request: HttpRequest, service: Service, **extra: Any) -> dict[str, Any]:
    environment = service.environment
    project = environment.project
    return {
        "service": service,
        "environment": environment,
        "project": project,
        "space": project.space,
        **sidebar_context(request.user, project.space),
        "env_color": environment.color or "var(--main-env-color)",
        **extra,
    }


@require_GET
@login_required
def logs(request: HtmxHttpRequest, service_id: str) -> HttpResponse:
    """Running logs, or with `?build=<number>|latest` the log of one build (the same viewer)."""
    service = get_service_for_user(request.user, service_id)
    try:
        build = build_for(service, request.GET.get("build"))
    except Build.DoesNotExist:
        if request.GET.get("build") != "latest":
            raise Http404("No such build.") from None
        build = None
        messages.info(request, "This service has no builds yet.")
    context = _page_context(
        request,
        service,
        build=build,
        has_builds=build is not None or service.builds.exists(),
        default_tail=DEFAULT_TAIL,
        max_tail=MAX_TAIL,
        max_pods=MAX_PODS,
        can_open_terminal=may_open_terminal(request.user, service.environment),
    )
    return render(request, "services/logs.html", context)


@require_GET
@login_required
def terminal(request: HtmxHttpRequest, service_id: str) -> HttpResponse:
    service = get_service_for_user(request.user, service_id)
    allowed = may_open_terminal(request.user, service.environment)
    context = _page_context(request, service, allowed=allowed)
    # A member who may see the service but not open a shell in it learns why, with a 403.
    return render(request, "services/terminal.html", context, status=200 if allowed else 403)


# --- download ------------------------------------------------------------------------------------


def _download_options(request: HttpRequest) -> dict[str, Any]:
    tail = request.GET.get("tail", "")
    try:
        tail_lines: int | None = None if tail == "all" else max(0, min(MAX_TAIL, int(tail or DEFAULT_TAIL)))
    except ValueError:
        tail_lines = DEFAULT_TAIL
    flag = lambda name: request.GET.get(name, "").lower() in {"1", "true", "on", "yes"}  # noqa: E731
    return {
        "pod": request.GET.get("pod", ""),
        "container": request.GET.get("container", ""),
        "tail": tail_lines,
        "previous": flag("previous"),
        "timestamps": flag("timestamps"),
    }


def _chosen_pods(pods: list[PodInfo], wanted: str) -> list[PodInfo]:
    if wanted == "*":
        return pods[-MAX_PODS:]
    if wanted:
        match = [pod for pod in pods if pod.name == wanted]
        if not match:
            raise Http404("No such pod.")
        return match
    running = [pod for pod in pods if pod.phase == "Running"]
    return [(running or pods)[-1]] if pods else []


async def _pod_log_lines(
    kube: KubeClient, namespace: str, pod: PodInfo, options: dict[str, Any], label: str
) -> AsyncIterator[bytes]:
    """One pod's log as text lines, read by a task and handed over a bounded pipe."""
    container = options["container"] if options["container"] in pod.containers else (pod.containers or ("",))[0]
    pipe = Pipe(asyncio.get_running_loop(), DOWNLOAD_PIPE_CAPACITY)
    reader = LogReader(
        kube,
        namespace,
        pod.name,
        LogOptions(container=container or None, tail=options["tail"], previous=options["previous"], follow=False, colours=False),
        pipe,
    )
    reader.start()
    try:
        while True:
            item = await pipe.get()
            if isinstance(item, Lines):
                if options["timestamps"]:
                    text = "".join(f"{label}{line}\n" for line in item.lines)
                else:
                    text = "".join(f"{label}{split_stamp(line)[1]}\n" for line in item.lines)
                yield text.encode("utf-8")
            elif isinstance(item, Status) and item.state in ("ended", "error"):
                if item.state == "error":
                    yield f"{label}[ale: the log could not be read: {item.message}]\n".encode()
                return
    finally:
        pipe.close()
        await reader.stop()


def _filename(service: Service, pod: str) -> str:
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    which = "all-pods" if pod == "*" else (pod or "latest")
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{service.name}-{which}-{stamp}.log")


@require_GET
@login_required
async def download_logs(request: HttpRequest, service_id: str) -> HttpResponse:
    """The log as a text file, with the viewer's options (pod or all pods, container, tail,
    previous, timestamps); colours and control sequences removed."""
    user = await request.auser()
    service = await sync_to_async(get_service_for_user)(user, service_id)
    options = _download_options(request)
    try:
        build = await sync_to_async(build_for)(service, request.GET.get("build"))
    except Build.DoesNotExist:
        raise Http404("No such build.") from None
    try:
        kube = await in_thread(client_for, service.environment.cluster)
        if build is not None:
            listed = await in_thread(list_build_pods, kube, service, build)
        else:
            listed = await in_thread(list_service_pods, kube, service)
        pods = _chosen_pods(listed, options["pod"])
    except ClusterError as exc:
        return HttpResponse(exc.user_message, status=502, content_type="text/plain; charset=utf-8")
    labelled = options["pod"] == "*"

    async def body() -> AsyncIterator[bytes]:
        for pod in pods:
            label = f"[{short_pod_name(pod.name)}] " if labelled else ""
            async for chunk in _pod_log_lines(kube, service.namespace, pod, options, label):
                yield chunk

    response = StreamingHttpResponse(body(), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_filename(service, options["pod"])}"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response

