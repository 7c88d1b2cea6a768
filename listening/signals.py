from django.dispatch import Signal

# Sent on commit after new messages are stored, with `message_ids` (list[int]) and
# `connector_id` (int). The learning app subscribes to classify them. Receivers get ids, never
# ORM objects, and must be quick: enqueue work, do not do it.
messages_ingested = Signal()

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
