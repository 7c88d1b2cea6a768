from django.dispatch import Signal

# Sent on commit when a reply is due a delivery attempt, with `reply_id` (int) and `countdown`
# (seconds, float). responses.tasks enqueues `responses.deliver_reply`: the actions in
# responses.replies never import the tasks that call them.
reply_due = Signal()

# Sent when outbound webhook deliveries are due a send, with `delivery_ids` (list[int]):
# responses.outbound_tasks enqueues `responses.deliver_webhook` for each.
webhook_deliveries_due = Signal()
