"""What an operator watches: Prometheus metrics and a health endpoint per service, and JSON logs.

`/metrics` in the Prometheus text format; `/healthz` answers 503 once the service has stalled for
`stall_after` seconds (settings.stall_seconds): its loop stopped polling, or every batch has failed
(an outage being retried), or one batch has been in hand all that time, or input has been waiting
(consumer lag) while no batch went through;
200 otherwise. Served from a daemon thread on `metrics_host:metrics_port`, a port of their own
(never a service's other port); labels carry codes and reasons, never personal data.

On loopback (the default host) both answer without credentials. On any other address every request
needs `Authorization: Bearer <metrics_token>` (Prometheus: `authorization: {credentials_file: …}`),
except that `/healthz` answers anyone its status code and `{"healthy": …}` alone (an orchestrator's
probe carries no secret); a non-loopback host without a token is refused at start.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
import sys
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app


class Metrics:
    def __init__(self, service: str):
        self.service = service
        self.registry = CollectorRegistry()
        self.consumed = Counter("gongji_consumed", "Input messages consumed", registry=self.registry)
        self.outputs = Counter("gongji_outputs", "Results published, by kind", ["kind"], registry=self.registry)
        self.rejected = Counter("gongji_rejected", "Inputs refused, by err_code", ["code"], registry=self.registry)
        self.dead_letters = Counter("gongji_dead_letters", "Inputs sent to dead-letters", registry=self.registry)
        self.retried = Counter("gongji_retried_batches", "Batches retried after an outage", registry=self.registry)
        self.batch_seconds = Histogram("gongji_batch_seconds", "Time to settle and publish one batch",
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                                       registry=self.registry)
        self.lag = Gauge("gongji_consumer_lag", "Messages behind the partition's end", ["topic", "partition"],
                         registry=self.registry)
        self.refused = Gauge("gongji_refused_partitions", "Input partitions refused: Redis lacks state they follow",
                             registry=self.registry)
        self.stall_after = 30.0  # serve() sets the service's GONGJI_STALL_SECONDS
        Gauge("gongji_healthy", "1 while /healthz answers 200, 0 once the service has stalled",
              registry=self.registry).set_function(lambda: float(self.health(self.stall_after)[0]))
        self.last_poll = time.monotonic()
        self.last_progress = time.monotonic()  # the last batch that went through (or start-up)
        self.failing_since: float | None = None  # first of the batches failing in a row, if they are
        self.busy: dict[str, float] = {}  # per loop (fraud runs two agents), since when its batch is in hand

    def batch_started(self, loop: str = "") -> None:
        self.busy[loop] = time.monotonic()

    def batch_failed(self, loop: str = "") -> None:
        self.busy.pop(loop, None)
        if self.failing_since is None:
            self.failing_since = time.monotonic()

    def batch_done(self, loop: str = "") -> None:
        self.busy.pop(loop, None)
        self.failing_since = None
        self.last_progress = time.monotonic()

    def idle(self) -> None:
        """Nothing came to handle: caught up, which is progress too."""
        self.last_progress = time.monotonic()

    def behind(self) -> int:
        """Messages waiting on the assigned partitions, at the last lag reading."""
        return int(sum(sample.value for metric in self.lag.collect() for sample in metric.samples))

    def health(self, stall_after: float) -> tuple[bool, dict]:
        """(healthy, the facts behind it): unhealthy once stalled for `stall_after` seconds."""
        now = time.monotonic()
        age, failing, idle = now - self.last_poll, self.failing_for(), now - self.last_progress
        busy = now - min(self.busy.values(), default=now)
        behind = self.behind()
        stuck = behind > 0 and idle >= stall_after
        refused = self.refusing()  # settlement: partitions it will not settle on state Redis lost
        healthy = age < stall_after and failing < stall_after and busy < stall_after and not stuck and not refused
        return healthy, {"service": self.service, "healthy": healthy, "seconds_since_poll": round(age, 1),
                         "seconds_failing": round(failing, 1), "seconds_in_batch": round(busy, 1),
                         "behind": behind, "seconds_since_progress": round(idle, 1),
                         "refused_partitions": refused}

    def failing_for(self) -> float:
        """Seconds that every batch has failed (an outage of a server the service writes to)."""
        return 0.0 if self.failing_since is None else time.monotonic() - self.failing_since

    def refuse(self, partitions: int) -> None:
        """How many partitions the service refuses to consume (settlement: Redis lost state); any is unhealthy."""
        self.refused.set(partitions)

    def refusing(self) -> int:
        return int(sum(sample.value for metric in self.refused.collect() for sample in metric.samples))

    def retries(self) -> int:
        return int(self.registry.get_sample_value("gongji_retried_batches_total") or 0)

    def polled(self) -> None:
        self.last_poll = time.monotonic()


class MetricsExposed(ValueError):
    """/metrics and /healthz asked for off loopback without a token."""


class PortInUse(ValueError):
    """A port a service listens on is taken: which address, and the setting that names it."""

    def __init__(self, what: str, host: str, port: int, setting: str, error: OSError):
        super().__init__(f"{what}: cannot listen on {host}:{port} ({error.strerror or error}): another process "
                         f"has it (a second copy of this service?); stop it or set {setting} to a free port")


def bind_error(error: OSError) -> bool:
    """Whether `error` is a listening socket refused its address (in use, or not ours to take)."""
    import errno

    return error.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(metrics: Metrics, host: str, port: int, stale_after: float = 30.0, token: str | None = None):
    """Serve /metrics and /healthz in a daemon thread; returns the server (its port: server.server_port).
    `token`: required off loopback (see the module's docstring)."""
    if not is_loopback(host) and not token:
        raise MetricsExposed(f"GONGJI_METRICS_HOST={host} is not loopback: set GONGJI_METRICS_TOKEN or "
                             "GONGJI_METRICS_TOKEN_FILE (the bearer token Prometheus sends), or 127.0.0.1")
    metrics.stall_after = stale_after
    prometheus = make_wsgi_app(metrics.registry)
    expected = hashlib.sha256(token.encode()).digest() if token else None

    def authorized(environ) -> bool:
        if expected is None:
            return True
        scheme, _, given = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(),
                                                                  expected)

    def app(environ, start_response):
        allowed = authorized(environ)
        if environ.get("PATH_INFO") == "/healthz":
            # Turning is not enough: a loop whose every batch has failed for a while (its database
            # or Redis is gone), or that leaves input waiting, is not healthy either.
            healthy, facts = metrics.health(stale_after)
            body = json.dumps(facts if allowed else {"healthy": healthy}).encode()
            start_response("200 OK" if healthy else "503 Service Unavailable", [("Content-Type", "application/json")])
            return [body]
        if not allowed:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Bearer realm="gongji-metrics"'),
                                                ("Content-Type", "text/plain")])
            return [b"authentication required\n"]
        return prometheus(environ, start_response)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):  # scrapes every few seconds are not news
            pass

    try:
        server = make_server(host, port, app, handler_class=Quiet)
    except OSError as error:
        if bind_error(error):
            raise PortInUse(f"{metrics.service} metrics", host, port, "GONGJI_METRICS_PORT", error) from None
        raise
    threading.Thread(target=server.serve_forever, name=f"{metrics.service}-metrics", daemon=True).start()
    return server


# Libraries that say at INFO what only their developers need (yoyo's every migration step, aiokafka's
# rebalances): held to their warnings at INFO. aiokafka logs every failed reconnection as an
# ERROR, several a second while a broker is away; those lines are dropped below DEBUG (the services
# say an outage once, with the setting to look at, and then sum it up: gongji.common.reachable).
QUIET_AT_INFO = {"yoyo": logging.WARNING, "aiokafka": logging.WARNING}
RECONNECTING = ("Unable connect to", "Unable to update metadata")


def _not_reconnecting(record: logging.LogRecord) -> bool:
    return not (isinstance(record.msg, str) and record.msg.startswith(RECONNECTING))
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(log_format: str | None = None, level: str = "INFO", stream=None) -> None:
    """Log lines on stderr, as GONGJI_LOG_FORMAT says (settings.LogSettings): `text`, a line a
    person reads, or `json`, one object per line (time, level, logger, msg, and exc_info with a
    traceback) for a log shipper; unset: text on a terminal, json otherwise. GONGJI_LOG_LEVEL sets
    the level; at INFO and above the libraries in QUIET_AT_INFO say only their warnings. Messages
    name events by their ids, topics and offsets, never by a person's particulars; server URLs go
    through `redacted`."""
    from pythonjsonlogger.json import JsonFormatter

    stream = stream or sys.stderr
    if log_format is None:
        log_format = "text" if getattr(stream, "isatty", lambda: False)() else "json"
    handler = logging.StreamHandler(stream)
    if log_format == "text":
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    else:
        handler.setFormatter(JsonFormatter("{asctime}{levelname}{name}{message}", style="{", json_ensure_ascii=False,
                                           rename_fields={"asctime": "time", "levelname": "level",
                                                          "name": "logger", "message": "msg"}))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    verbose = root.getEffectiveLevel() < logging.INFO
    for name, quiet in QUIET_AT_INFO.items():
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else quiet)
    for name in ("aiokafka", "aiokafka.client"):  # a logger's filter sees only its own records
        logging.getLogger(name).removeFilter(_not_reconnecting)
        if not verbose:
            logging.getLogger(name).addFilter(_not_reconnecting)


def redacted(url: str | None) -> str:
    """A server URL (or a libpq key=value string) fit for a log line: any password replaced by ***,
    in the user-info part (up to its last @), in a query parameter, or as a key=value pair."""
    text = re.sub(r"//([^:/@]*):[^/]*@", r"//\1:***@", url or "")
    return re.sub(r"(password\s*=\s*)('[^']*'|[^&\s]*)", r"\1***", text, flags=re.IGNORECASE)
