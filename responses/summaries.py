"""Plain, JSON-ready views of cases, messages, replies and notes: what console events carry.

Customer text travels as data, never as markup: consoles insert it with textContent."""

from __future__ import annotations

from learning.models import Classification
from listening.models import Message
from responses.models import Case, Note, Reply

PREVIEW_CHARS = 280


def user_dict(user) -> dict | None:
    if user is None:
        return None
    return {"id": user.pk, "username": user.get_username(), "name": user.get_full_name() or user.get_username()}


def chips(classification: Classification | None) -> dict:
    """Sentiment, intent and emotion with their confidence, for the inbox chips."""
    if classification is None or classification.status != Classification.Status.OK:
        return {}
    def top(label: str, scores: dict) -> dict:
        return {"label": label, "confidence": round(float(scores.get(label, 0.0)), 2)}
    return {
        "sentiment": top(classification.sentiment, classification.sentiment_scores),
        "intent": top(classification.intent, classification.intent_scores),
        "emotion": top(classification.emotion, classification.emotion_scores),
        "language": classification.language,
        # A language the sentiment models do not read: shown as "not scored", never as neutral.
        "not_scored": "not_scored" in (classification.flags or []),
        "lane": classification.lane,
        "lane_reason": str((classification.priority_factors or {}).get("lane_reason", "")),
        "topics": sorted({t.get("name", "") for t in classification.topics if isinstance(t, dict)}),
        "model": f"{classification.model_name} {classification.model_version}".strip(),
    }


def case_summary(case: Case, last: Message | None = None, classification: Classification | None = None) -> dict:
    conversation = case.conversation
    contact = conversation.contact
    last = last if last is not None else case.last_message
    return {
        "id": case.pk,
        "status": case.status,
        "lane": case.lane,
        "priority": round(case.priority, 3),
        "team": case.team_id,
        "queue": {"id": case.queue_id, "name": case.queue.name} if case.queue_id else None,
        "assignee": user_dict(case.assignee) if case.assignee_id else None,
        "awaiting_assignment": case.awaiting_assignment,
        "sla_due_at": case.sla_due_at.isoformat() if case.sla_due_at else None,
        "sla_state": case.sla_state,
        "waiting_since": case.waiting_since.isoformat() if case.waiting_since else None,
        "tags": case.tags,
        "snoozed": case.snoozed,
        "snoozed_until": case.snoozed_until.isoformat() if case.snoozed_until else None,
        "opened_at": case.opened_at.isoformat() if case.opened_at else None,
        "first_response_at": case.first_response_at.isoformat() if case.first_response_at else None,
        "channel": conversation.channel,
        "customer": (contact.display_name or contact.handle or contact.external_id) if contact else "",
        "preview": (last.text[:PREVIEW_CHARS] if last else ""),
        "chips": chips(classification),
        "updated_at": case.updated_at.isoformat() if case.updated_at else None,
    }


def message_dict(message: Message) -> dict:
    author = message.author
    return {
        "id": message.pk,
        "direction": message.direction,
        "text": message.text,
        "channel": message.channel,
        "author": (author.display_name or author.handle or author.external_id) if author else "",
        "sent_at": message.sent_at.isoformat(),
    }


def reply_dict(reply: Reply) -> dict:
    return {
        "id": reply.pk,
        "status": reply.status,
        "text": reply.text,
        "author": user_dict(reply.author),
        "automatic": reply.automatic,
        "attempts": reply.attempts,
        "error": reply.last_error if reply.status == Reply.Status.FAILED else "",
        "message": reply.message_id,
        "created_at": reply.created_at.isoformat(),
        "delivered_at": reply.delivered_at.isoformat() if reply.delivered_at else None,
    }


def note_dict(note: Note) -> dict:
    return {
        "id": note.pk,
        "text": note.text,
        "author": user_dict(note.author),
        "mentions": [user_dict(u) for u in note.mentions.all()],
        "created_at": note.created_at.isoformat(),
    }
