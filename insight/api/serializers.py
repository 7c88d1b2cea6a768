"""What the insight API returns: read-only views of alerts."""

from __future__ import annotations

from rest_framework import serializers

from insight.models import Alert


class AlertSerializer(serializers.ModelSerializer):
    class Meta:
        model = Alert
        fields = ["id", "team", "kind", "dimension", "key", "label", "window_start", "window_end", "observed",
                  "expected", "score", "status", "created_at", "acknowledged_at"]
        read_only_fields = fields
