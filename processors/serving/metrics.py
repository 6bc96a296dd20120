"""The worker's Prometheus metrics (``GET /metrics``), all named ``voxpipe_*``.

One :class:`ServingMetrics` per process. With several workers on one port
(``--workers N``), a scrape reaches whichever worker the kernel picks, so the workers
write their samples to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's
multiprocess mode, as gunicorn deployments do) and every worker's ``/metrics`` answers
the machine's totals; per-process gauges (event-loop lag, CPU) keep a ``pid`` label.
One worker alone uses the default in-process registry. prometheus_client is the
``serve`` extra; without it ``/metrics`` says how to install it and everything else works.
"""

from __future__ import annotations

import logging
import os
from typing import Any

__all__ = ["LATENCY_BUCKETS", "ServingMetrics", "available"]

log = logging.getLogger("voxpipe.serving")

#: Turn latency buckets (seconds): 50 ms to 5 s, tight where voice agents live (300-1200 ms).
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


def available() -> bool:
    """True when prometheus_client is installed."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


class ServingMetrics:
    """The metric objects of one worker process, and ``render()`` for ``/metrics``."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # multiprocess: the samples live in files, the registry is built per scrape
        reg = None if self.multiprocess else CollectorRegistry()
        self.registry = reg

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            return Counter(name, doc, labels, registry=reg)

        def gauge(name: str, doc: str, mode: str, labels: tuple[str, ...] = ()) -> Any:
            return Gauge(name, doc, labels, registry=reg, multiprocess_mode=mode)

        self.sessions_active = gauge("voxpipe_sessions_active", "Sessions running now", "livesum")
        self.sessions_started = counter("voxpipe_sessions_started_total", "Sessions started")
        self.sessions_ended = counter("voxpipe_sessions_ended_total", "Sessions ended, by outcome "
                                      "(end, client_closed, error, drained, cancel)", ("outcome",))
        self.sessions_refused = counter("voxpipe_sessions_refused_total", "Sessions refused, by reason "
                                        "(capacity, cpu, draining)", ("reason",))
        self.turns = counter("voxpipe_turns_total", "Replies that started to play (a response's first audio)")
        self.turn_latency = Histogram("voxpipe_turn_latency_seconds", "End of the user's speech (when the VAD "
                                      "detected it) to the first audio of the reply, tool calls included",
                                      buckets=LATENCY_BUCKETS, registry=reg)
        self.barge_ins = counter("voxpipe_barge_ins_total", "Barge-ins (the user interrupted the reply)")
        self.tool_calls = counter("voxpipe_tool_calls_total", "Tool calls, by tool", ("tool",))
        self.tool_failures = counter("voxpipe_tool_failures_total", "Tool calls that returned an error, by tool",
                                     ("tool",))
        self.queue_dropped = counter("voxpipe_queue_dropped_total", "Frames dropped by full queues, by processor "
                                     "type", ("processor_type",))
        self.queue_stale = counter("voxpipe_queue_stale_total", "Frames of an interrupted turn dropped, by "
                                   "processor type", ("processor_type",))
        self.underruns = counter("voxpipe_playback_underruns_total", "Playback underruns (the player ran dry "
                                 "mid-reply), as reported by pages and sinks")
        self.tokens = counter("voxpipe_tokens_total", "Model tokens used, by direction (input, output)",
                              ("direction",))
        self.loop_lag = Histogram("voxpipe_event_loop_lag_seconds", "How late a 20 ms event-loop timer fired",
                                  buckets=LAG_BUCKETS, registry=reg)
        self.loop_lag_max = gauge("voxpipe_event_loop_lag_max_seconds", "Largest event-loop lag of the last "
                                  "second, per process", "liveall")
        self.cpu_seconds = counter("voxpipe_process_cpu_seconds_total", "CPU time used by the worker process")
        self.cpu_load = gauge("voxpipe_process_cpu_load", "Share of one core the worker used over the last "
                              "second, per process", "liveall")
        self.ready = gauge("voxpipe_worker_ready", "1 while the worker admits sessions, per process", "liveall")
        self.draining = gauge("voxpipe_worker_draining", "1 while the worker drains, per process", "liveall")

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
