"""Prometheus metrics. One registry per runtime, so tests can build many apps.

Under ``serve --processes N`` (``PROMETHEUS_MULTIPROC_DIR`` set by the supervisor before
this process started) every sample also lands in the shared directory, and
``exposition`` reads every process's: gauges that mirror Redis state keep the most recent
value written, the desk-rate gauge sums the live processes."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Metrics", "csat_by_team", "percentile_text", "quantile", "summarize"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "deskbridge_http_requests",
            "HTTP requests answered, by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.events = Counter(
            "deskbridge_events",
            "Inbound events by source (channel or desk), outcome and reason.",
            ["source", "outcome", "reason"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "deskbridge_deliveries",
            "Delivery attempts by direction and outcome.",
            ["direction", "outcome"],
            registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "deskbridge_delivery_seconds",
            "Time from intake to successful delivery.",
            ["direction"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=self.registry,
        )
        self.quota_messages = Counter(
            "deskbridge_channel_quota_messages",
            "Messages sent that count against a channel plan's quota (LINE push), by account.",
            ["account", "channel"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "deskbridge_queue_depth",
            "Jobs in the arq queue (ready and deferred).",
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )
        self.pending = Gauge(
            "deskbridge_deliveries_pending",
            "Pending deliveries by account.",
            ["account"],
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )
        self.dead = Gauge(
            "deskbridge_deliveries_dead",
            "Dead-lettered deliveries by account.",
            ["account"],
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )
        self.suggestions = Gauge(
            "deskbridge_identity_suggestions_pending",
            "Merge suggestions awaiting an operator's decision, by merge scope.",
            ["scope"],
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )
        self.desk_rate_waiting = Gauge(
            "deskbridge_desk_rate_waiting",
            "Desk API calls waiting for a token of the account's shared rate budget.",
            ["account", "desk"],
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.desk_rate_deferred = Counter(
            "deskbridge_desk_rate_deferred",
            "Deliveries deferred because the desk's rate budget had no token in time.",
            ["account", "desk"],
            registry=self.registry,
        )
        # service figures (issue 11): what the support team promises its customers
        response_buckets = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800)
        self.first_response = Histogram(
            "deskbridge_first_response_seconds",
            "Customer's first message of a conversation to the first agent reply relayed.",
            ["account", "channel", "language"],
            buckets=response_buckets,
            registry=self.registry,
        )
        self.reply_time = Histogram(
            "deskbridge_reply_seconds",
            "Oldest unanswered customer message to the agent reply relayed after it.",
            ["account", "channel", "language"],
            buckets=response_buckets,
            registry=self.registry,
        )
        self.messages = Counter(
            "deskbridge_messages",
            "Messages filed (inbound) and relayed (outbound), by channel.",
            ["account", "channel", "direction"],
            registry=self.registry,
        )
        self.awaiting = Gauge(
            "deskbridge_conversations_awaiting_reply",
            "Conversations whose customer waits for an agent reply.",
            ["account", "channel"],
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )
        self.sla_breaches = Gauge(
            "deskbridge_sla_breaches",
            "Conversations waiting longer than the channel's response target.",
            ["account", "channel"],
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )
        self.ambiguous_resends = Counter(
            "deskbridge_ambiguous_resends",
            "Calls sent again after an unknown outcome (timeout or reset after the request"
            " was written) where the platform offers no idempotency key and no read-back:"
            " each may have reached the customer or desk twice.",
            ["peer"],
            registry=self.registry,
        )
        self.off_hours_acks = Counter(
            "deskbridge_off_hours_acknowledgements",
            "Automatic acknowledgements sent outside business hours.",
            ["account", "channel"],
            registry=self.registry,
        )
        # the bot front desk (issue 23): bot-resolved sessions are started - handed_off
        self.bot_sessions = Counter(
            "deskbridge_bot_sessions",
            "Bot sessions by outcome: started, handed_off (to a person).",
            ["account", "channel", "language", "outcome"],
            registry=self.registry,
        )
        self.bot_answers = Counter(
            "deskbridge_bot_answers",
            "Answers the bot sent, by responder (knowledge_base, http).",
            ["account", "channel", "language", "source"],
            registry=self.registry,
        )
        self.bot_handoffs = Counter(
            "deskbridge_bot_handoffs",
            "Hand-offs to a person, by reason (asked, max_turns, no_answer, responder,"
            " responder_error, not_text).",
            ["account", "channel", "language", "reason"],
            registry=self.registry,
        )
        self.bot_time_to_handoff = Histogram(
            "deskbridge_bot_time_to_handoff_seconds",
            "A bot session's start to its hand-off to a person.",
            ["account", "channel", "language"],
            buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600, 14400),
            registry=self.registry,
        )
        # satisfaction surveys (issue 23): the average is csat_score's sum / count
        self.csat_surveys = Counter(
            "deskbridge_csat_surveys",
            "Surveys by outcome: scheduled, sent, already, opted_out, recent, window_closed, "
            "commented.",
            ["account", "channel", "outcome"],
            registry=self.registry,
        )
        self.csat_score = Histogram(
            "deskbridge_csat_score",
            "Survey answers: the customer's score from 1 to 5, by the routing's team (desk "
            "group; none when no rule assigns one).",
            ["account", "channel", "language", "team"],
            buckets=(1, 2, 3, 4, 5),
            registry=self.registry,
        )
        self.channel_health = Gauge(
            "deskbridge_channel_health",
            "What the platforms say about each channel: credentials_valid (1/0),"
            " webhook_pending, webhook_error_age_seconds, quota_used, quota_used_ratio.",
            ["account", "channel", "check"],
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )
        # labels() takes a lock and builds a tuple on every call; the ack path counts twice
        self._children: dict[tuple[Any, ...], Any] = {}

    def exposition(self) -> bytes:
        """The text format for ``/metrics``: this process's, or all of the host's."""
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not shared:
            return generate_latest(self.registry)
        every = CollectorRegistry()
        MultiProcessCollector(every, path=shared)  # type: ignore[no-untyped-call]  # untyped upstream
        return generate_latest(every)

    def request(self, route: str, status: int) -> None:
        self._child(self.requests, route, str(status)).inc()

    def event(self, source: str, outcome: str, reason: str = "", n: int = 1) -> None:
        if n:
            self._child(self.events, source, outcome, reason).inc(n)

    def _child(self, metric: Counter, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


def quantile(buckets: list[tuple[float, float]], q: float) -> tuple[float, float] | None:
    """The bounds ``(lower, upper]`` of the bucket of a Prometheus histogram (cumulative
    ``(le, count)`` pairs) that holds its ``q`` quantile; ``upper`` is infinite in the
    open-ended bucket. None when empty. A histogram keeps no finer truth than that."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower = 0.0
    for le, count in buckets:
        if count >= rank:
            return (lower, le)
        lower = le
    return None


_HISTOGRAMS = {
    "deskbridge_first_response_seconds": "first",
    "deskbridge_reply_seconds": "reply",
}


def summarize(text: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (account, channel): messages in and out, waiting conversations, SLA
    breaches, satisfaction scores (sum and count), bot sessions (started, handed off),
    and the first-response and reply-time medians and 90th percentiles as ``(lower,
    upper)`` seconds: the bucket each falls in, or ``(x, x)`` when exact (a single
    response, whose time the histogram's sum holds)."""
    rows: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    hist: dict[tuple[str, str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    totals: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            key = (labels.get("account", ""), labels.get("channel", ""))
            base, _, part = sample.name.rpartition("_")
            if sample.name == "deskbridge_messages_total":
                rows[key][labels.get("direction", "")] = int(sample.value)
            elif sample.name == "deskbridge_conversations_awaiting_reply":
                rows[key]["awaiting"] = int(sample.value)
            elif sample.name == "deskbridge_sla_breaches":
                rows[key]["breaches"] = int(sample.value)
            elif sample.name in ("deskbridge_csat_score_sum", "deskbridge_csat_score_count"):
                which = "csat_sum" if sample.name.endswith("_sum") else "csat_count"
                rows[key][which] = rows[key].get(which, 0.0) + sample.value  # languages summed
            elif sample.name == "deskbridge_bot_sessions_total":
                which = f"bot_{labels.get('outcome', '')}"
                rows[key][which] = rows[key].get(which, 0.0) + sample.value
            elif base in _HISTOGRAMS and part == "bucket":  # languages summed
                hist[(*key, _HISTOGRAMS[base])][float(labels["le"])] += sample.value
            elif base in _HISTOGRAMS and part in ("count", "sum"):
                totals[(*key, _HISTOGRAMS[base])][part == "sum"] += sample.value
    for (account, channel, which), merged in hist.items():
        count, total = totals[(account, channel, which)]
        pairs = sorted(merged.items())
        for name, q in (("p50", 0.5), ("p90", 0.9)):
            found = (total, total) if count == 1 else quantile(pairs, q)
            rows[(account, channel)][f"{which}_{name}"] = found
    return dict(rows)


def csat_by_team(text: str) -> dict[tuple[str, str], tuple[float, float]]:
    """Per (account, team): the satisfaction scores' sum and count, channels and
    languages summed."""
    rows: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("deskbridge_csat_score_sum", "deskbridge_csat_score_count"):
                key = (sample.labels.get("account", ""), sample.labels.get("team", ""))
                rows[key][sample.name.endswith("_count")] += sample.value
    return {key: (total, count) for key, (total, count) in rows.items()}


def _short(seconds: float, *, exact: bool = False) -> str:
    if seconds < (120 if exact else 60):
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def percentile_text(bounds: tuple[float, float] | None) -> str:
    """A percentile as ``stats`` and the console print it: exact, or the bucket it
    falls in ("1 min to 5 min")."""
    if bounds is None:
        return "-"
    low, high = bounds
    if low == high:
        return _short(low, exact=True) if low < 7200 else f"{low / 3600:.1f} h"
    if math.isinf(high):
        return f"> {_short(low)}"
    if low == 0:
        return f"≤ {_short(high)}"
    return f"{_short(low)} to {_short(high)}"
