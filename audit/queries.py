"""The audit page's one query: a filter in, a queryset of one org's events out.

The page and both exports build their events here, so what the page shows and what an
export holds cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Q, TextField, Value
from django.db.models.functions import Cast, Upper

from . import targets
from .models import AuditEvent, AuditEventQuerySet

# How far out of seq order two events of one org may be stamped. record() reads the clock
# before append() takes the chain's lock, so an event that waited for the lock can carry
# an earlier time than the event it follows; several web servers add their clock skew.
# Date filters widen their seq bounds by this much, and filter on time exactly inside them.
CLOCK_SLACK = timedelta(minutes=15)


@dataclass(frozen=True)
class AuditFilter:
    """What the reader asked for. Empty fields filter nothing."""

    actor: str = ""
    action: str = ""
    target: str = ""
    date_from: date | None = None
    date_to: date | None = None
    text: str = ""

    def __bool__(self) -> bool:
        return any(asdict(self).values())

    def as_params(self) -> dict[str, str]:
        """The filter as query-string parameters (and as the export event's details)."""
        params = {
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "q": self.text,
        }
        return {name: value for name, value in params.items() if value}

    def events(self, org) -> AuditEventQuerySet:
        """The org's events that match, newest first.

        Every condition narrows an index range on (org, ...) or is checked on rows read in
        seq order, so a page costs about the same at a million events as at a hundred.
        """
        events = AuditEvent.objects.for_org(org)
        if self.actor:
            events = self._by_actor(org, events)
        if self.action:
            events = events.filter(action=self.action)
        if self.target:
            events = events.filter(self._target_condition(org))
        if self.date_from or self.date_to:
            events = self._in_dates(org, events)
        if self.text:
            events = events.alias(details_text=Cast("details", TextField())).filter(
                self._text_condition()
            )
        return events.newest_first()

    def _by_actor(self, org, events: AuditEventQuerySet) -> AuditEventQuerySet:
        """The actor's events if someone has exactly that label, else every label it starts.

        Both ignore case. The exact match reads the actor's events from an index in seq
        order, so a page costs the same for someone who last acted a year ago; a prefix
        cannot be read in seq order and is checked on the events instead.
        """
        exact = Q(label_upper=Upper(Value(self.actor)))
        labels = AuditEvent.objects.for_org(org).alias(label_upper=Upper("actor_label"))
        if labels.filter(exact).exists():
            return events.alias(label_upper=Upper("actor_label")).filter(exact)
        return events.filter(actor_label__istartswith=self.actor)

    def _target_condition(self, org) -> Q:
        """Events about the org's targets the text names, as their apps find them (for
        access keys: a key ID, or the name of one or more of the org's keys, live or
        retired)."""
        condition = Q(pk__in=[])
        for target_type, kind in targets.registered().items():
            # An empty list matches nothing, without a query.
            condition |= Q(target_type=target_type, target_id__in=kind.find(org, self.target))
        return condition

    def _in_dates(self, org, events: AuditEventQuerySet) -> AuditEventQuerySet:
        """Events stamped within the dates (whole UTC days, both inclusive).

        The time index only finds two seq bounds: the last event stamped well before the
        start and the first stamped well after the end. Between them the main query stays a
        range scan on (org, seq), and the exact time test drops the few strays at the edges.
        """
        start = _midnight(self.date_from) if self.date_from else None
        # None when there is no end, or when the end is the last day a date can name.
        end = _midnight(self.date_to, days=1) if self.date_to else None
        org_events = AuditEvent.objects.for_org(org)
        if start is not None:
            events = events.filter(occurred_at__gte=start)
            edge = _shifted(start, -CLOCK_SLACK)
            if edge is not None:
                before = (
                    org_events.filter(occurred_at__lt=edge)
                    .order_by("-occurred_at")
                    .values_list("seq", flat=True)
                    .first()
                )
                if before is not None:
                    events = events.filter(seq__gt=before)
        if end is not None:
            events = events.filter(occurred_at__lt=end)
            edge = _shifted(end, CLOCK_SLACK)
            if edge is not None:
                after = (
                    org_events.filter(occurred_at__gte=edge)
                    .order_by("occurred_at")
                    .values_list("seq", flat=True)
                    .first()
                )
                if after is not None:
                    events = events.filter(seq__lt=after)
        return events

    def _text_condition(self) -> Q:
        """The text anywhere in the action, actor, target ID or details, ignoring case.

        The details are matched in their JSON text, where a quote or a backslash in a value
        is escaped; the text is escaped the same way, so it matches inside values exactly.
        """
        in_json = json.dumps(self.text, ensure_ascii=False)[1:-1]
        return (
            Q(action__icontains=self.text)
            | Q(actor_label__icontains=self.text)
            | Q(target_id__icontains=self.text)
            | Q(details_text__icontains=in_json)
        )


def _midnight(day: date, days: int = 0) -> datetime | None:
    try:
        return datetime.combine(day, time.min, tzinfo=UTC) + timedelta(days=days)
    except OverflowError:
        return None


def _shifted(moment: datetime, delta: timedelta) -> datetime | None:
    try:
        return moment + delta
    except OverflowError:
        return None
