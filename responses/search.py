"""Search over conversations: what an agent types, made safe, run against the full-text indexes
(listening.search_index: PostgreSQL tsvector + GIN, SQLite FTS5), scoped by responses.access.

The user's text is parsed here into terms; no part of it ever reaches the database as query
syntax. On PostgreSQL each term goes to phraseto_tsquery() as a bound parameter (the same parser
as the index, and it cannot fail on any text); on SQLite each term becomes a double-quoted FTS5
phrase of plain word tokens. The last bare word is matched as a prefix, so "refu" finds refunds
while typing.

What it understands: words (all must match), "quoted phrases", a leading - to leave a word out,
and OR between two terms. Everything else is text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.db import connection
from django.db.models import BooleanField, Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from learning.models import Classification, Lane
from listening import search_index
from listening.models import Contact, Customer, Message
from responses import access
from responses.exceptions import InvalidRequest
from responses.models import ACTIVE_STATUSES, Case, CaseStatus, Note, Role

MAX_QUERY_CHARS = 500
MAX_TERMS = 12
MAX_HITS = 200  # newest matching messages looked at for one page of conversations
# Counts stop here and read "200+": the page already fetched the newest MAX_HITS + 1 matches, so its
# count costs nothing, while counting on to 1,000 matches of a common word was most of a search's
# time (2.5 s of 3.3 s for "Premium" in the praise lane over 1.47M messages, bench/search.py).
COUNT_CAP = MAX_HITS
NOTE = search_index.Indexed("responses_note", ("text",), "note")
WORD = re.compile(r"\w+")
STATUS_CHOICES = {"active": "Active", **dict(CaseStatus.choices)}
ASSIGNEE_SPECIAL = {"me": "Me", "none": "Nobody"}
LANE_CHOICES = {value: label for value, label in Lane.choices}


# --- The user's text -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Term:
    text: str  # the user's words for this term, control characters removed
    tokens: tuple[str, ...]  # its words, as \w+ runs
    negated: bool = False
    phrase: bool = False
    prefix: bool = False


@dataclass(frozen=True)
class Query:
    groups: tuple[tuple[Term, ...], ...] = ()  # AND of groups; a group is an OR of terms

    @property
    def empty(self) -> bool:
        return not self.groups

    def words(self) -> list[str]:
        """The words to highlight (not those left out)."""
        return [t for group in self.groups for term in group if not term.negated for t in term.tokens]


def clean_text(value: str) -> str:
    """Drops NUL and other control characters and lone surrogates (PostgreSQL refuses NUL; a
    lone surrogate cannot be encoded), keeps every script's letters."""
    return "".join(ch if unicodedata.category(ch) not in ("Cc", "Cs", "Cf") else " " for ch in value)


_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')


def parse_query(raw: str) -> Query:
    """The user's text as terms; InvalidRequest (400) only when it is too long or leaves nothing
    but words to exclude."""
    if not isinstance(raw, str):
        raise InvalidRequest("the search must be text")
    if len(raw) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"the search is {len(raw):,} characters; at most {MAX_QUERY_CHARS}")
    text = clean_text(raw).strip()
    terms: list[Term | str] = []
    for match in _TOKEN.finditer(text):
        negated_phrase, phrase, bare = match.groups()
        if bare == "OR":
            terms.append("OR")
            continue
        if phrase is not None:
            body, negated, is_phrase = phrase, bool(negated_phrase), True
        else:
            negated = bare.startswith("-") and len(bare) > 1
            body, is_phrase = (bare[1:] if negated else bare), False
        tokens = tuple(WORD.findall(body))
        if tokens:
            terms.append(Term(text=body.strip(), tokens=tokens, negated=negated, phrase=is_phrase))
    if not terms:
        return Query()
    # The last positive bare single word is a prefix: results follow the typing.
    for i in range(len(terms) - 1, -1, -1):
        term = terms[i]
        if isinstance(term, Term):
            if not term.negated and not term.phrase and len(term.tokens) == 1 and text and not text[-1].isspace():
                terms[i] = Term(term.text, term.tokens, prefix=True)
            break
    groups: list[list[Term]] = []
    join = False
    for term in terms:
        if term == "OR":
            join = bool(groups)
            continue
        if join and not term.negated and not any(t.negated for t in groups[-1]):
            groups[-1].append(term)
        else:
            groups.append([term])
        join = False
    groups = groups[:MAX_TERMS]
    if not any(not t.negated for group in groups for t in group):
        raise InvalidRequest("add a word to look for, not only words to leave out (-word)")
    return Query(tuple(tuple(g) for g in groups))


def _pg_term(term: Term) -> tuple[str, list]:
    if term.prefix:
        return "to_tsquery('simple'::regconfig, %s)", [f"'{term.tokens[0]}':*"]  # \w+: no quote inside
    return "phraseto_tsquery('simple'::regconfig, %s)", [term.text]


def pg_tsquery(query: Query) -> tuple[str, list]:
    """A tsquery expression with bound parameters: the user's text is never tsquery syntax."""
    parts, params = [], []
    for group in query.groups:
        sqls = []
        for term in group:
            sql, p = _pg_term(term)
            sqls.append(f"!!{sql}" if term.negated else sql)
            params += p
        parts.append("(" + " || ".join(sqls) + ")")
    return " && ".join(parts), params


def fts5_match(query: Query) -> str:
    """An FTS5 MATCH string made only of double-quoted word tokens, AND, OR, NOT and parentheses."""
    def phrase(term: Term) -> str:
        return '"' + " ".join(term.tokens) + '"' + ("*" if term.prefix else "")

    positive = [g for g in query.groups if not g[0].negated]
    negative = [g for g in query.groups if g[0].negated]
    text = " AND ".join("(" + " OR ".join(phrase(t) for t in g) + ")" for g in positive)
    for group in negative:
        text = f"({text}) NOT {phrase(group[0])}"
    return text


def matching(rows: QuerySet, spec: search_index.Indexed, query: Query) -> QuerySet:
    """`rows` (of spec's table) narrowed to those whose indexed text matches."""
    if query.empty:  # no words: the filters alone decide
        return rows
    # The SQL text is built from constant identifiers and function calls; the user's words are
    # bound parameters.
    if connection.vendor == "postgresql":
        sql, params = pg_tsquery(query)
        document = search_index.document(spec)
        return rows.filter(RawSQL(f"{document} @@ ({sql})", params, output_field=BooleanField()))  # noqa: S611
    fts = f"SELECT rowid FROM {spec.fts} WHERE {spec.fts} MATCH %s"  # noqa: S608
    return rows.filter(pk__in=RawSQL(fts, [fts5_match(query)]))  # noqa: S611


# --- Filters ---------------------------------------------------------------------------------------
FILTER_NAMES = ("channel", "lane", "status", "assignee", "tag", "language", "since", "until", "days")
_CHANNEL = re.compile(r"^[a-z0-9_]{1,40}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,4})?$")
_TAG = re.compile(r"^[\w][\w .:-]{0,39}$")


@dataclass(frozen=True)
class Filters:
    channel: str = ""
    lane: str = ""
    status: str = ""
    assignee: str = ""  # "me", "none" or a user id
    tag: str = ""
    language: str = ""
    since: date | None = None
    until: date | None = None
    days: int | None = None  # the last N days (a saved view keeps moving with the calendar)

    def as_dict(self) -> dict:
        out = {}
        for name in FILTER_NAMES:
            value = getattr(self, name)
            if value not in ("", None):
                out[name] = value.isoformat() if isinstance(value, date) else value
        return out

    @property
    def any(self) -> bool:
        return bool(self.as_dict())


def _date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be a date like 2026-03-01")


def parse_filters(data) -> Filters:
    """Filters from query parameters or a JSON object: 400 with a reason for anything off."""
    values: dict = {}
    for name in FILTER_NAMES:
        value = data.get(name, "")
        if value is None:
            value = ""
        if isinstance(value, int) and not isinstance(value, bool) and name == "days":
            value = str(value)
        if not isinstance(value, str):
            raise InvalidRequest(f"{name} must be text")
        value = value.strip()
        if len(value) > 60:
            raise InvalidRequest(f"{name} is {len(value)} characters; at most 60")
        if value:
            values[name] = value
    if "channel" in values and not _CHANNEL.match(values["channel"]):
        raise InvalidRequest("channel must be a channel name such as email or whatsapp")
    if "lane" in values and values["lane"] not in LANE_CHOICES:
        raise InvalidRequest(f"lane must be one of {', '.join(LANE_CHOICES)}")
    if "status" in values and values["status"] not in STATUS_CHOICES:
        raise InvalidRequest(f"status must be one of {', '.join(STATUS_CHOICES)}")
    if "assignee" in values and values["assignee"] not in ASSIGNEE_SPECIAL and not (
            values["assignee"].isascii() and values["assignee"].isdigit() and len(values["assignee"]) <= 12):
        raise InvalidRequest("assignee must be me, none or a user id")
    if "tag" in values and not _TAG.match(values["tag"]):
        raise InvalidRequest("tag must be up to 40 letters, digits, spaces, '.', ':' or '-'")
    if "language" in values and not _LANGUAGE.match(values["language"]):
        raise InvalidRequest("language must be a language code such as en or pt-BR")
    for name in ("since", "until"):
        if name in values:
            values[name] = _date(values[name], name)
    if values.get("since") and values.get("until") and values["since"] > values["until"]:
        raise InvalidRequest("since must not be after until")
    if "days" in values:
        days = values["days"]
        if not (days.isascii() and days.isdigit() and 0 < int(days) <= 3660):
            raise InvalidRequest("days must be a whole number of days from 1 to 3660")
        values["days"] = int(days)
    return Filters(**values)


def _window(filters: Filters) -> tuple[datetime | None, datetime | None]:
    tz = timezone.get_current_timezone()
    start = datetime.combine(filters.since, time.min, tz) if filters.since else None
    end = datetime.combine(filters.until + timedelta(days=1), time.min, tz) if filters.until else None
    if filters.days:
        recent = timezone.now() - timedelta(days=filters.days)
        start = max(start, recent) if start else recent
    return start, end


def _case_filter(user, filters: Filters, prefix: str) -> Q:
    """The filters on a case, with `prefix` the path from the rows to the case ("" for cases)."""
    q = Q()
    if filters.lane:
        q &= Q(**{f"{prefix}lane": filters.lane})
    if filters.status == "active":
        q &= Q(**{f"{prefix}status__in": ACTIVE_STATUSES})
    elif filters.status:
        q &= Q(**{f"{prefix}status": filters.status})
    if filters.assignee == "me":
        q &= Q(**{f"{prefix}assignee": user})
    elif filters.assignee == "none":
        q &= Q(**{f"{prefix}assignee__isnull": True, f"{prefix}isnull" if prefix else "pk__isnull": False})
    elif filters.assignee:
        q &= Q(**{f"{prefix}assignee_id": int(filters.assignee)})
    if filters.tag:
        if connection.vendor == "postgresql":
            q &= Q(**{f"{prefix}tags__contains": [filters.tag]})
        else:  # no JSON containment on SQLite: the quoted tag in the JSON text
            q &= Q(**{f"{prefix}tags__icontains": f'"{filters.tag}"'})
    return q


def _case_filters_used(filters: Filters) -> bool:
    return bool(filters.lane or filters.status or filters.assignee or filters.tag)


# --- Scope: what the user may see -----------------------------------------------------------------
@dataclass
class Scope:
    admin: bool
    teams: set[int]
    connectors: set[int]

    @classmethod
    def of(cls, user) -> Scope:
        admin = access.role_of(user) == Role.ADMIN
        if admin:
            return cls(True, set(), set())
        return cls(False, access.team_ids(user), access.connector_ids(user))


def visible_messages(scope: Scope) -> QuerySet[Message]:
    """Messages of the user's teams' cases, and those of their teams' sources that have no case
    (set aside as spam): what the console would show them."""
    if scope.admin:
        return Message.objects.all()
    return Message.objects.filter(Q(conversation__case__team_id__in=scope.teams)
                                  | Q(conversation__case__isnull=True, connector_id__in=scope.connectors))


# --- Results -----------------------------------------------------------------------------------------
@dataclass
class Hit:
    kind: str  # "message" or "note"
    id: int
    at: datetime
    segments: list[tuple[str, bool]]  # the snippet: (text, matched)
    author: str = ""
    outbound: bool = False


@dataclass
class Group:
    conversation_id: int
    case: Case | None
    customer: str
    channel: str
    at: datetime
    hits: list[Hit] = field(default_factory=list)


@dataclass
class CustomerHit:
    name: str
    detail: str  # handle, email, channel
    case_id: int | None


@dataclass
class Results:
    query: Query
    filters: Filters
    groups: list[Group]
    customers: list[CustomerHit]
    count: int  # matching messages (text) or cases (filters only), at most COUNT_CAP + 1 (read "200+")
    more: bool  # more conversations than shown

    @property
    def count_label(self) -> str:
        return f"{COUNT_CAP:,}+" if self.count > COUNT_CAP else f"{self.count:,}"

    @property
    def searched(self) -> bool:
        return not self.query.empty or self.filters.any


def message_rows(user, query: Query, filters: Filters, scope: Scope | None = None) -> QuerySet[Message]:
    """The messages the user may see that match the text and the filters."""
    scope = scope or Scope.of(user)
    rows = matching(visible_messages(scope), search_index.MESSAGE, query)
    if filters.channel:
        rows = rows.filter(channel=filters.channel)
    start, end = _window(filters)
    if start:
        rows = rows.filter(sent_at__gte=start)
    if end:
        rows = rows.filter(sent_at__lt=end)
    if filters.language:
        rows = rows.filter(Exists(Classification.objects.filter(message_id=OuterRef("pk"), is_current=True,
                                                                language=filters.language)))
    if _case_filters_used(filters):
        rows = rows.filter(_case_filter(user, filters, "conversation__case__"))
    return rows


def case_rows(user, filters: Filters, scope: Scope | None = None) -> QuerySet[Case]:
    """Filters without text: the cases themselves (a saved view such as "my pending ones")."""
    scope = scope or Scope.of(user)
    rows = Case.objects.all() if scope.admin else Case.objects.filter(team_id__in=scope.teams)
    rows = rows.filter(_case_filter(user, filters, ""))
    if filters.channel:
        rows = rows.filter(channel=filters.channel)
    start, end = _window(filters)
    if start:
        rows = rows.filter(opened_at__gte=start)
    if end:
        rows = rows.filter(opened_at__lt=end)
    if filters.language:
        rows = rows.filter(Exists(Classification.objects.filter(message_id=OuterRef("last_message_id"),
                                                                is_current=True, language=filters.language)))
    return rows


def count(user, query: Query, filters: Filters) -> int:
    """Matching messages (with text) or cases (filters only), capped at COUNT_CAP + 1."""
    rows = case_rows(user, filters) if query.empty else message_rows(user, query, filters)
    return rows.order_by()[:COUNT_CAP + 1].count()  # no ORDER BY: any COUNT_CAP + 1 rows will do


RECENT = (timedelta(days=7), timedelta(days=35))  # windows tried before the whole range


def newest_hits(rows: QuerySet[Message], start: datetime | None) -> list[tuple[int, int, datetime]]:
    """The newest MAX_HITS + 1 of `rows` as (id, conversation, sent at), looked for in the last
    week first, then the last five weeks. A common word matches tens of thousands of messages;
    PostgreSQL, misjudging how many (a phrase or a prefix), fetches them all to sort them (0.5-1 s
    over 1M messages). Within a week it reads a few thousand. Only when a window holds fewer than
    MAX_HITS + 1 is the next one asked (the same rows again: still the newest first)."""
    ordered = rows.order_by("-sent_at", "-id").values_list("id", "conversation_id", "sent_at")
    now = timezone.now()
    for span in RECENT:
        if start is not None and start >= now - span:
            break  # the user's own dates are narrower: the whole range is that window
        hits = list(ordered.filter(sent_at__gte=now - span)[:MAX_HITS + 1])
        if len(hits) > MAX_HITS:
            return hits
    return list(ordered[:MAX_HITS + 1])


def search(user, query: Query, filters: Filters, *, limit: int = 20) -> Results:
    """One page of conversations (newest match first) with up to three snippets each, and the
    customers whose name, handle or email match."""
    scope = Scope.of(user)
    if query.empty and not filters.any:
        return Results(query, filters, [], [], 0, False)
    if query.empty:
        return _case_results(user, filters, scope, limit)
    rows = message_rows(user, query, filters, scope)
    hits = newest_hits(rows, _window(filters)[0])
    total = len(hits)  # COUNT_CAP + 1 ("200+") when there are more
    found = [("message", i, conv, at) for i, conv, at in hits[:MAX_HITS]]
    notes = Note.objects.all() if scope.admin else Note.objects.filter(case__team_id__in=scope.teams)
    notes = matching(notes, NOTE, query).filter(_case_filter(user, filters, "case__"))
    if filters.channel:
        notes = notes.filter(case__channel=filters.channel)
    found += [("note", i, conv, at) for i, conv, at in
              notes.order_by("-created_at").values_list("id", "case__conversation_id", "created_at")[:50]]
    found.sort(key=lambda row: row[3], reverse=True)
    order: dict[int, list] = {}
    for row in found:
        order.setdefault(row[2], [])
        if len(order[row[2]]) < 3:
            order[row[2]].append(row)
    conversations = list(order)[:limit]
    groups = _groups(conversations, {c: order[c] for c in conversations}, query)
    return Results(query, filters, groups, _customers(query, scope), total, len(order) > limit)


def as_json(results: Results) -> dict:
    """The results as plain JSON (the console's page and /api/v1/search): text, never HTML."""
    return {
        "count": results.count, "count_label": results.count_label, "more": results.more,
        "groups": [{
            "conversation": g.conversation_id,
            "case": g.case.pk if g.case else None,
            "status": g.case.status if g.case else "",
            "customer": g.customer, "channel": g.channel, "at": g.at.isoformat(),
            "hits": [{"kind": h.kind, "id": h.id, "at": h.at.isoformat(), "author": h.author,
                      "snippet": "".join(piece for piece, _ in h.segments),
                      "matches": [piece for piece, matched in h.segments if matched]} for h in g.hits],
        } for g in results.groups],
        "customers": [{"name": c.name, "detail": c.detail, "case": c.case_id} for c in results.customers],
    }


def _case_results(user, filters: Filters, scope: Scope, limit: int) -> Results:
    cases = list(case_rows(user, filters, scope).order_by("-updated_at", "-id")
                 .values_list("conversation_id", "last_message_id", "updated_at")[:limit + 1])
    wanted = {conv: [("message", last, conv, at)] if last else [] for conv, last, at in cases[:limit]}
    groups = _groups(list(wanted), wanted, Query())
    total = len(cases) if len(cases) <= limit else case_rows(user, filters, scope).order_by()[:COUNT_CAP + 1].count()
    return Results(Query(), filters, groups, [], total, len(cases) > limit)


def _groups(conversations: list[int], hits: dict[int, list], query: Query) -> list[Group]:
    """Groups in the given order, loaded in a fixed number of queries."""
    from listening.models import Conversation

    convs = Conversation.objects.select_related("contact").in_bulk(conversations)
    cases = {c.conversation_id: c for c in Case.objects.filter(conversation_id__in=conversations)
             .select_related("assignee", "queue")}
    message_ids = [row[1] for rows in hits.values() for row in rows if row[0] == "message"]
    note_ids = [row[1] for rows in hits.values() for row in rows if row[0] == "note"]
    messages = Message.objects.select_related("author").in_bulk(message_ids)
    notes = Note.objects.select_related("author").in_bulk(note_ids)
    words = query.words()
    out = []
    for conv_id in conversations:
        conversation = convs.get(conv_id)
        if conversation is None:
            continue
        contact = conversation.contact
        group = Group(conv_id, cases.get(conv_id), _contact_name(contact), conversation.channel,
                      conversation.last_message_at)
        for kind, row_id, _conv, _at in hits[conv_id]:
            if kind == "message" and row_id in messages:
                m = messages[row_id]
                group.hits.append(Hit("message", m.pk, m.sent_at, snippet(m.text, words),
                                      _contact_name(m.author) if m.direction == "in" else "Reply",
                                      m.direction != "in"))
            elif kind == "note" and row_id in notes:
                n = notes[row_id]
                name = (n.author.get_full_name() or n.author.get_username()) if n.author else "Someone"
                group.hits.append(Hit("note", n.pk, n.created_at, snippet(n.text, words), f"Note by {name}"))
        if group.hits:
            group.at = group.hits[0].at
        out.append(group)
    return out


def _contact_name(contact) -> str:
    if contact is None:
        return "Unknown customer"
    return contact.display_name or (f"@{contact.handle}" if contact.handle else "Unknown customer")


def _customers(query: Query, scope: Scope) -> list[CustomerHit]:
    contacts = matching(Contact.objects.all(), search_index.CONTACT, query)
    people = matching(Customer.objects.all(), search_index.CUSTOMER, query)
    if not scope.admin:
        seen = (Q(conversations__case__team_id__in=scope.teams)
                | Q(conversations__case__isnull=True, conversations__connector_id__in=scope.connectors))
        contacts = contacts.filter(seen)
        people = people.filter(Q(contacts__conversations__case__team_id__in=scope.teams)
                               | Q(contacts__conversations__case__isnull=True,
                                   contacts__conversations__connector_id__in=scope.connectors))
    found: list[CustomerHit] = []
    cases = Case.objects.all() if scope.admin else Case.objects.filter(team_id__in=scope.teams)
    for contact in contacts.distinct().order_by("-last_seen_at")[:8]:
        case = cases.filter(conversation__contact=contact).order_by("-opened_at").values_list("pk", flat=True).first()
        detail = " · ".join(x for x in (f"@{contact.handle}" if contact.handle else "", contact.email,
                                        contact.channel) if x)
        found.append(CustomerHit(_contact_name(contact), detail, case))
    for person in people.distinct().order_by("-updated_at")[:4]:
        case = (cases.filter(conversation__contact__customer=person).order_by("-opened_at")
                .values_list("pk", flat=True).first())
        detail = " · ".join(x for x in (person.email, person.phone) if x)
        found.append(CustomerHit(person.display_name or person.email or "Customer", detail, case))
    return found


# --- Snippets ----------------------------------------------------------------------------------------
SNIPPET_CHARS = 180


def snippet(text: str, words: list[str]) -> list[tuple[str, bool]]:
    """A window of `text` around the first matched word, as (text, matched) pieces. The template
    escapes every piece: nothing here is HTML."""
    text = " ".join(clean_text(text or "").split())
    if not words:
        cut = text[:SNIPPET_CHARS]
        return [(cut + ("…" if len(text) > SNIPPET_CHARS else ""), False)]
    pattern = re.compile(r"(?<!\w)(" + "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
                         + r")\w*", re.IGNORECASE)
    first = pattern.search(text)
    start = max(0, (first.start() if first else 0) - 50)
    if start:
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < start + 20 else start
    window = text[start:start + SNIPPET_CHARS]
    pieces: list[tuple[str, bool]] = [("…", False)] if start else []
    position = 0
    for match in pattern.finditer(window):
        if match.start() > position:
            pieces.append((window[position:match.start()], False))
        pieces.append((match.group(0), True))
        position = match.end()
    if position < len(window):
        pieces.append((window[position:], False))
    if start + SNIPPET_CHARS < len(text):
        pieces.append(("…", False))
    return pieces


def heal_indexes(using: str = "default", **kwargs) -> None:
    """post_migrate: on SQLite, restore FTS tables and triggers that a later table rebuild dropped
    (or that a database made without migrations never had)."""
    from django.db import connections

    search_index.heal(connections[using], [*search_index.LISTENING_TABLES, NOTE])
