from django.dispatch import Signal

# Sent on commit after classifications are stored, with `message_ids` and `classification_ids`
# (lists of int). The responses app subscribes to route the conversations. Receivers must be quick.
messages_classified = Signal()
