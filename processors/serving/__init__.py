"""Serving at scale: admission and drain, Prometheus metrics, OpenTelemetry traces, worker processes.

``voxpipe serve`` (:mod:`processors.web.server`) hands each session to a
:class:`~processors.serving.host.ServingHost`; ``--workers N`` runs N such servers on one
port (:mod:`processors.serving.workers`). docs/serving.md explains the whole.
"""

from .admission import Admission, Phase
from .host import ServingHost

__all__ = ["Admission", "Phase", "ServingHost"]
