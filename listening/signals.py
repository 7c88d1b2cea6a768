from django.dispatch import Signal

# Sent on commit after new messages are stored, with `message_ids` (list[int]) and
# `connector_id` (int). The learning app subscribes to classify them. Receivers get ids, never
# ORM objects, and must be quick: enqueue work, do not do it. `profile` (list of tuples, or None
# from a sender that does not know) is what ingestion knew of the inbound ones, so the profile
# receiver (listening.attributes.learn_from_messages) need not read them back: (message id, the
# author's customer id or None, channel, sent_at, whether the raw has a RAW_PROFILE_KEYS key), for
# messages with a customer or such a key only.
messages_ingested = Signal()

# Top-level keys of a message's raw payload that the profile receiver reads (location, time zone).
RAW_PROFILE_KEYS = ("location", "time_zone")

# Sent when a verified webhook reports on messages we sent, with `connector_id` (int) and
# `statuses` (list[listening.connectors.base.DeliveryStatus]). The responses app applies them to
# its Replies; listening never imports responses.
delivery_status = Signal()

# Sent on commit when a connector's polling has just failed FAILING_AFTER times in a row, with
# `connector_id` (int) and `reason` (str). The responses app tells the admins' consoles.
connector_failing = Signal()

# Sent on commit when a backfill was recorded on a connector, with `connector_id` (int):
# listening.tasks queues the worker that runs it (the action never imports the task).
backfill_requested = Signal()

# Sent on commit after new signals are stored, with `signal_ids` (list[int]). The responses app
# subscribes to evaluate its rules over signals; receivers enqueue, they do not evaluate inline.
signals_ingested = Signal()
