"""The console's routes, included under /console/ with the namespace "console". Every route here
must appear in the isolation matrix (tests/responses/test_isolation_http.py), which fails when one
is missing. Ids are matched as text so a malformed id is a JSON 404, not the resolver's page."""

from django.urls import path

from responses.views import (
    attachments,
    calendars,
    canned,
    case,
    case_actions,
    connect,
    connectors,
    inbox,
    macros,
    noise,
    timed_rules,
)
from responses.views import webhooks as webhook_views
from responses.views import search as search_views
from responses.api import console as token_views

urlpatterns = [
    # /console/ lands each role where its work is (inbox.home); /console/queue/ is the inbox itself.
    path("", inbox.home, name="inbox"),
    path("queue/", inbox.inbox, name="queue"),
    path("counts/", inbox.counts, name="counts"),
    path("search/", search_views.search_page, name="search"),
    path("views/", search_views.views, name="saved-views"),
    path("views/<str:view_id>/", search_views.view_rename, name="saved-view"),
    path("views/<str:view_id>/delete/", search_views.view_delete, name="saved-view-delete"),
    path("presence/", inbox.presence, name="presence"),
    path("bulk/", inbox.bulk, name="bulk"),
    path("next/", inbox.next_case, name="next"),
    path("cases/<str:case_id>/", case.case_page, name="case"),
    path("cases/<str:case_id>/row/", inbox.case_row, name="case-row"),
    path("cases/<str:case_id>/status/", case.case_status, name="case-status"),
    path("cases/<str:case_id>/assign/", case.case_assign, name="case-assign"),
    path("cases/<str:case_id>/tags/", case.case_tags, name="case-tags"),
    path("cases/<str:case_id>/reply/", case.case_reply, name="case-reply"),
    path("cases/<str:case_id>/notes/", case.case_note, name="case-note"),
    path("cases/<str:case_id>/correct/", case.case_correct, name="case-correct"),
    path("cases/<str:case_id>/canned/", case.case_canned, name="case-canned"),
    path("cases/<str:case_id>/attachments/<str:attachment_id>/", attachments.case_attachment, name="case-attachment"),
    path("replies/<str:reply_id>/retry/", case.reply_retry, name="reply-retry"),
    path("cases/<str:case_id>/snooze/", case_actions.case_snooze, name="case-snooze"),
    path("cases/<str:case_id>/unsnooze/", case_actions.case_unsnooze, name="case-unsnooze"),
    path("cases/<str:case_id>/macros/<str:macro_id>/", case_actions.case_macro, name="case-macro"),
    path("cases/<str:case_id>/merge/", case_actions.case_merge, name="case-merge"),
    path("merges/<str:merge_id>/undo/", case_actions.merge_undo, name="merge-undo"),
    path("macros/", macros.macro_list, name="macro-list"),
    path("macros/new/", macros.macro_new, name="macro-new"),
    path("macros/<str:macro_id>/", macros.macro_edit, name="macro-edit"),
    path("macros/<str:macro_id>/delete/", macros.macro_delete, name="macro-delete"),
    path("noise/", noise.noise_list, name="noise"),
    path("messages/<str:message_id>/open/", noise.open_case, name="message-open-case"),
    path("canned/", canned.canned_list, name="canned-list"),
    path("canned/new/", canned.canned_new, name="canned-new"),
    path("canned/<str:canned_id>/", canned.canned_edit, name="canned-edit"),
    path("canned/<str:canned_id>/delete/", canned.canned_delete, name="canned-delete"),
    path("sources/", connectors.connector_list, name="connectors"),
    path("sources/new/", connect.connect_choose, name="connect"),
    path("sources/new/<str:kind>/", connect.connect_new, name="connect-new"),
    path("sources/oauth/callback/", connect.oauth_callback, name="oauth-callback"),
    path("sources/<str:connector_id>/", connect.connector_detail, name="connector"),
    path("sources/<str:connector_id>/test/", connect.connector_test, name="connector-test"),
    path("sources/<str:connector_id>/oauth/", connect.connector_oauth, name="connector-oauth"),
    path("sources/<str:connector_id>/backfill/", connect.connector_backfill, name="connector-backfill"),
    path("sources/<str:connector_id>/secrets/<str:name>/", connect.connector_secret, name="connector-secret"),
    path("sources/<str:connector_id>/pause/", connectors.connector_pause, name="connector-pause"),
    path("sources/<str:connector_id>/resume/", connectors.connector_resume, name="connector-resume"),
    # API tokens (anyone with console access, for themselves; admins for everyone) and outbound
    # webhooks (admins).
    path("tokens/", token_views.token_list, name="tokens"),
    path("tokens/<str:token_id>/revoke/", token_views.token_revoke, name="token-revoke"),
    path("webhooks/", webhook_views.webhook_list, name="webhooks"),
    path("webhooks/deliveries/<str:delivery_id>/replay/", webhook_views.webhook_replay, name="webhook-replay"),
    path("webhooks/<str:subscription_id>/", webhook_views.webhook_detail, name="webhook"),
    path("webhooks/<str:subscription_id>/enabled/", webhook_views.webhook_enabled, name="webhook-enabled"),
    path("webhooks/<str:subscription_id>/delete/", webhook_views.webhook_delete, name="webhook-delete"),
    path("calendars/", calendars.calendar_list, name="calendars"),
    path("calendars/<str:team_id>/", calendars.calendar_edit, name="calendar"),
    path("calendars/<str:team_id>/delete/", calendars.calendar_delete, name="calendar-delete"),
    path("timed-rules/", timed_rules.rule_list, name="timed-rules"),
    path("timed-rules/new/", timed_rules.rule_new, name="timed-rule-new"),
    path("timed-rules/<str:rule_id>/", timed_rules.rule_edit, name="timed-rule"),
    path("timed-rules/<str:rule_id>/delete/", timed_rules.rule_delete, name="timed-rule-delete"),
]
