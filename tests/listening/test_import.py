"""File import: the TWCS customer-care sample at scale, bounded memory, malformed rows, threading,
timestamps and the import_messages command."""

from __future__ import annotations

import csv
import io
import json
import os
import tracemalloc
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from listening.connectors.base import OutboundReply
from listening.exceptions import ConfigInvalid, NotSupported
from listening.importing import RowRejected, import_file, normalise_id, parse_timestamp
from listening.models import Connector, Contact, Conversation, Message

# The shared datasets sit beside the checkout (../shared/data), on developer machines and in CI.
SHARED_DATA = Path(os.environ.get("CXM_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
TWCS = SHARED_DATA / "twcs_spotifycares_sample" / "support_requests.csv"
TWCS_MAP = {
    "id": "tweet_id",
    "author": "author_id",
    "sent_at": "created_at",
    "in_reply_to": "in_response_to_tweet_id",
    "responses": "response_tweet_id",
    "direction": "inbound",
}
# The file has 15,103 records for a parser that ends a record at every CR (pandas, csv): 6 tweets
# contain bare CRs outside quotes, which split each into 2 or 3 records. Joined back, it holds
# 15,096 tweets (15,090 intact + 6 repaired), all with inbound=True.
TWCS_TWEETS = 15_096


@pytest.fixture
def importer(make_connector):
    return make_connector("import", slug="history", config={"channel": "twitter"})


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# --- The TWCS sample ----------------------------------------------------------------------------
@pytest.mark.skipif(not TWCS.exists(), reason=f"TWCS sample not present at {SHARED_DATA}")
def test_import_twcs_sample_stores_every_tweet_once_threaded_by_reply_chain(importer):
    report = import_file(importer, TWCS, mapping=TWCS_MAP, batch_size=2000)
    assert report.rejected == 0, report.errors
    assert report.rows == report.created == TWCS_TWEETS
    assert Message.objects.filter(connector=importer).count() == report.rows
    assert Contact.objects.filter(channel="twitter").count() == 8723  # authors, as the README says

    first = Message.objects.get(connector=importer, external_id="849")
    assert first.sent_at == datetime(2017, 10, 31, 23, 36, 20, tzinfo=UTC)  # Twitter's date format
    assert first.parent_external_id == "848"  # "848.0" normalised
    assert first.direction == "in" and first.author.external_id == "115887"
    # A row broken by bare CRs is joined back, its line breaks kept.
    lumia = Message.objects.get(connector=importer, external_id="289165")
    assert lumia.text == "@SpotifyCares Microsoft Lumia 950XL\n\nWindows 10 Mobile 10.0.15252.0\n\nSpotify 5.2.4.0"
    assert lumia.parent_external_id == "289171"

    # Threads follow the reply chain: SpotifyCares' answers are not in the sample, so a customer
    # tweet answering answer S joins the thread of the tweet that S answered (response_tweet_id).
    rows = list(Message.objects.filter(connector=importer).values_list(
        "external_id", "parent_external_id", "conversation_id", "raw"))
    conversation_of = {external_id: conversation for external_id, _, conversation, _ in rows}
    answered_by: dict[str, str] = {}
    for external_id, _, _, raw in rows:
        for response in raw["response_tweet_id"].split(","):
            if response:
                answered_by[response] = external_id
    bridged = 0
    for external_id, parent, conversation, raw in rows:
        assert parent == normalise_id(raw["in_response_to_tweet_id"])
        assert "." not in parent
        if parent in answered_by:
            assert conversation == conversation_of[answered_by[parent]]
            bridged += 1
    assert bridged > 5000
    assert conversation_of["849"] == conversation_of["850"]  # 850 -> (848, brand) -> 849
    conversations = Conversation.objects.filter(connector=importer).count()
    assert conversations < report.rows - 4000

    again = import_file(importer, TWCS, mapping=TWCS_MAP, batch_size=2000)
    assert (again.rows, again.created, again.duplicates, again.rejected) == (TWCS_TWEETS, 0, TWCS_TWEETS, 0)
    assert Message.objects.filter(connector=importer).count() == TWCS_TWEETS
    assert Conversation.objects.filter(connector=importer).count() == conversations


# --- Bounded memory -----------------------------------------------------------------------------
def synthetic_csv(path: Path, rows: int) -> Path:
    """Rows with quoted line breaks, 5,000 authors, and replies to brand messages absent from
    the file (as in TWCS), so the on-disk thread index is exercised too."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "author", "sent_at", "text", "in_reply_to", "responses"])
        for n in range(rows):
            writer.writerow([f"m{n}", f"u{n % 5000}", 1_700_000_000 + n,
                             f"message {n}: the app keeps crashing,\nplease help",
                             f"brand{n - 1}" if n % 3 else "", f"brand{n}"])
    return path


def warm_up(make_connector, tmp_path: Path) -> None:
    """One untraced import first, so first-use caches (Django's, the csv module's) count in
    neither measurement and cannot flatter the larger file."""
    import_file(make_connector("import", slug="warm-up"), synthetic_csv(tmp_path / "warm.csv", 1500))


def peak_import_memory(connector: Connector, path: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        report = import_file(connector, path, batch_size=1000)
        return tracemalloc.get_traced_memory()[1], report.created
    finally:
        tracemalloc.stop()


def assert_flat(small_peak: int, large_peak: int, label: str) -> None:
    print(f"{label}: peak traced memory {small_peak / 1e6:.2f} MB -> {large_peak / 1e6:.2f} MB for 4x the rows")
    assert large_peak < 1.5 * small_peak


@pytest.mark.django_db(transaction=True)  # no outer transaction holding every batch's on-commit hooks
def test_import_memory_does_not_grow_with_file_size(make_connector, tmp_path, monkeypatch):
    """20k vs 80k rows through reading, repair, the thread index, conversion and batching.
    Storage is replaced by a counter here: it only ever sees one batch, and the next test
    checks it with the database, at a size that keeps tracemalloc's slowdown bearable."""
    import listening.importing as importing
    from listening.actions import IngestResult

    monkeypatch.setattr(importing, "ingest_messages",
                        lambda connector, messages: IngestResult(created_ids=list(range(len(messages)))))
    small = synthetic_csv(tmp_path / "small.csv", 20_000)
    large = synthetic_csv(tmp_path / "large.csv", 80_000)
    warm_up(make_connector, tmp_path)
    small_peak, small_created = peak_import_memory(make_connector("import", slug="small"), small)
    large_peak, large_created = peak_import_memory(make_connector("import", slug="large"), large)
    assert (small_created, large_created) == (20_000, 80_000)
    assert_flat(small_peak, large_peak, "reading and batching 20k vs 80k")


@pytest.mark.django_db(transaction=True)
def test_import_memory_with_the_database_does_not_grow_with_file_size(make_connector, tmp_path, settings):
    settings.CXM_CLASSIFY_ON_INGEST = False  # import memory alone; eager classification would load the models
    small = synthetic_csv(tmp_path / "small.csv", 2_000)
    large = synthetic_csv(tmp_path / "large.csv", 8_000)
    warm_up(make_connector, tmp_path)
    small_peak, small_created = peak_import_memory(make_connector("import", slug="small"), small)
    large_peak, large_created = peak_import_memory(make_connector("import", slug="large"), large)
    assert (small_created, large_created) == (2_000, 8_000)
    assert_flat(small_peak, large_peak, "complete import 2k vs 8k")


# --- Malformed rows -----------------------------------------------------------------------------
def test_import_csv_reports_malformed_rows_with_line_numbers_and_stores_the_rest(importer, tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes(
        b"id,author,sent_at,text\n"                                     # line 1
        b"1,ann,2026-11-01T10:00:00Z,fine\n"                            # 2
        b'2,bob,2026-11-01T10:01:00Z,"two\nlines, quoted"\n'            # 3-4
        b"3,cid,2026-11-01T10:02:00Z,\n"                                # 5: missing text
        b"4,dee,yesterday-ish,text\n"                                   # 6: bad date
        b"5,eve,2026-11-01T10:04:00Z\n"                                 # 7: a field short
        b"6,fay,2026-11-01T10:05:00Z,caf\xe9 latin-1\n"                 # 8: not UTF-8
        b"\n"                                                           # 9: blank
        b"7,,2026-11-01T10:06:00Z,no author\n"                          # 10
        b"8,gus,2026-11-01T10:07:00Z,too,many,fields\n"                 # 11
        b"9,hal,1793526000,last good\n"                                 # 12
    )
    report = import_file(importer, path)
    assert (report.rows, report.created, report.rejected) == (9, 3, 6)
    assert [(e.line, e.reason) for e in report.errors] == [
        (5, "missing text"),
        (6, "unrecognised date 'yesterday-ish'"),
        (7, "expected 4 fields, found 3"),
        (8, "row is not valid UTF-8"),
        (10, "missing author"),
        (11, "expected 4 fields, found 6"),
    ]
    assert sorted(Message.objects.values_list("external_id", flat=True)) == ["1", "2", "9"]
    assert Message.objects.get(external_id="2").text == "two\nlines, quoted"
    assert str(report.errors[0]) == "line 5: missing text"


def test_import_jsonl_reports_bad_lines_and_stores_good_ones(importer, tmp_path):
    good = {"id": 1, "text": "hello", "author": {"id": "u1", "name": "Ann"}, "ts": "2026-11-01T10:00:00+01:00"}
    lines = [
        json.dumps(good).encode(),                                                              # 1
        b'{"id": 2, "text": "bad bytes \xff\xfe", "author": {"id": "u2"}, "ts": "2026-11-01"}',  # 2
        b"{not json",                                                                           # 3
        b"[1, 2, 3]",                                                                           # 4
        b"",                                                                                    # 5
        json.dumps({"id": 5, "text": " ", "author": {"id": "u5"}, "ts": "2026-11-01"}).encode(),  # 6
        json.dumps({"id": 6, "text": "ok", "author": {"id": "u6"}, "ts": "31/12/2026"}).encode(),  # 7
        json.dumps({"id": 7.0, "text": "float id", "author": {"id": 7}, "ts": 1793526000000}).encode(),  # 8
    ]
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = import_file(importer, path, mapping={"author": "author.id", "author_name": "author.name",
                                                  "sent_at": "ts"})
    assert (report.rows, report.created, report.rejected) == (7, 2, 5)
    assert [(e.line, e.reason.split(" (")[0].split(":")[0]) for e in report.errors] == [
        (2, "line is not valid UTF-8"),
        (3, "invalid JSON"),
        (4, "line is not a JSON object"),
        (6, "missing text"),
        (7, "unrecognised date '31/12/2026'"),
    ]
    first = Message.objects.get(external_id="1")
    assert first.author.display_name == "Ann"
    assert first.sent_at == datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    assert Message.objects.get(external_id="7").sent_at == datetime(2026, 11, 1, 9, 40, tzinfo=UTC)  # ms


def test_import_keeps_only_the_first_errors_but_counts_all(importer, tmp_path):
    path = write_csv(tmp_path / "bad.csv", ["id", "author", "sent_at", "text"],
                     [[str(n), "a", "not a date", "x"] for n in range(50)])
    report = import_file(importer, path, max_errors=10)
    assert (report.rejected, len(report.errors), report.errors[-1].line) == (50, 10, 11)


def test_import_unknown_or_missing_columns_fail_before_reading(importer, tmp_path):
    path = write_csv(tmp_path / "x.csv", ["id", "body"], [["1", "hi"]])
    with pytest.raises(ConfigInvalid, match="text=nope"):
        import_file(importer, path, mapping={"text": "nope"})
    with pytest.raises(ConfigInvalid, match="map a column to text"):
        import_file(importer, path)
    with pytest.raises(ConfigInvalid, match="unknown fields"):
        import_file(importer, path, mapping={"colour": "body"})
    with pytest.raises(ConfigInvalid, match="cannot tell the format"):
        import_file(importer, tmp_path / "x.txt")


# --- Idempotence, threading, direction ------------------------------------------------------------
def test_import_rerun_and_overlapping_files_store_nothing_twice(importer, tmp_path):
    def rows(numbers: range) -> list[list[str]]:
        return [[str(n), "u", f"2026-11-01T10:{n:02d}:00Z", f"t{n}"] for n in numbers]

    header = ["id", "author", "sent_at", "text"]
    first = write_csv(tmp_path / "a.csv", header, rows(range(10)))
    second = write_csv(tmp_path / "b.csv", header, rows(range(5, 15)))
    assert import_file(importer, first, batch_size=3).created == 10
    again = import_file(importer, first, batch_size=3)
    assert (again.created, again.duplicates) == (0, 10)
    overlap = import_file(importer, second, batch_size=4)
    assert (overlap.created, overlap.duplicates) == (5, 5)
    assert Message.objects.count() == 15


def test_import_without_an_id_column_dedupes_on_content(importer, tmp_path):
    path = write_csv(tmp_path / "noid.csv", ["author", "sent_at", "text"],
                     [["u1", "2026-11-01T10:00:00Z", "same"], ["u1", "2026-11-01T10:00:00Z", "same"],
                      ["u1", "2026-11-01T10:01:00Z", "same"]])
    report = import_file(importer, path)
    assert (report.created, report.duplicates) == (2, 1)
    assert import_file(importer, path).created == 0


def test_import_threads_replies_to_the_root_whatever_the_file_order(importer, tmp_path):
    rows = [
        ["c3", "ann", "2026-11-01T10:03:00Z", "third", "c2", "True"],   # before its parents
        ["c2", "brand", "2026-11-01T10:02:00Z", "second", "c1", "False"],
        ["x1", "bob", "2026-11-01T11:00:00Z", "unrelated", "", "True"],
        ["c1", "ann", "2026-11-01T10:01:00Z", "first", "", "True"],
    ]
    path = write_csv(tmp_path / "thread.csv", ["id", "author", "sent_at", "text", "reply_to", "inbound"], rows)
    report = import_file(importer, path, mapping={"in_reply_to": "reply_to", "direction": "inbound"}, batch_size=1)
    assert report.created == 4
    stored = {m.external_id: m for m in Message.objects.all()}
    assert {stored[k].conversation.external_id for k in ("c1", "c2", "c3")} == {"c1"}
    assert stored["x1"].conversation.external_id == "x1"
    assert stored["c3"].parent_id == stored["c2"].pk and stored["c2"].parent_id == stored["c1"].pk
    assert stored["c2"].direction == "out" and stored["c1"].direction == "in"
    assert stored["c1"].conversation.message_count == 3

    # A later file answering a stored message joins the conversation it was stored in.
    later = write_csv(tmp_path / "later.csv", ["id", "author", "sent_at", "text", "reply_to"],
                      [["c4", "ann", "2026-11-02T09:00:00Z", "still broken", "c3"]])
    import_file(importer, later, mapping={"in_reply_to": "reply_to"})
    assert Message.objects.get(external_id="c4").conversation.external_id == "c1"


def test_import_explicit_thread_column_wins(importer, tmp_path):
    path = write_csv(tmp_path / "t.csv", ["id", "author", "sent_at", "text", "thread", "in_reply_to"],
                     [["1", "a", "2026-11-01T10:00:00Z", "x", "ticket-9", ""],
                      ["2", "b", "2026-11-01T10:01:00Z", "y", "ticket-9", "1"]])
    import_file(importer, path)
    assert set(Message.objects.values_list("conversation__external_id", flat=True)) == {"ticket-9"}


def test_import_rejects_unknown_direction_values(importer, tmp_path):
    path = write_csv(tmp_path / "d.csv", ["id", "author", "sent_at", "text", "direction"],
                     [["1", "a", "2026-11-01T10:00:00Z", "x", "sideways"],
                      ["2", "a", "2026-11-01T10:00:00Z", "y", "out"]])
    report = import_file(importer, path)
    assert report.errors[0].reason.startswith("direction must be")
    assert Message.objects.get().direction == "out"


def test_import_progress_is_reported_per_batch(importer, tmp_path):
    path = write_csv(tmp_path / "p.csv", ["id", "author", "sent_at", "text"],
                     [[str(n), "u", "2026-11-01T10:00:00Z", "t"] for n in range(25)])
    seen: list[int] = []
    import_file(importer, path, batch_size=10, progress=lambda r: seen.append(r.rows))
    assert seen == [10, 20, 25]


# --- Parsing --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Tue Oct 31 23:36:20 +0000 2017", datetime(2017, 10, 31, 23, 36, 20, tzinfo=UTC)),
        ("Wed Nov 01 07:40:06 +0200 2017", datetime(2017, 11, 1, 5, 40, 6, tzinfo=UTC)),
        ("2017-10-31T23:36:20Z", datetime(2017, 10, 31, 23, 36, 20, tzinfo=UTC)),
        ("2017-10-31 23:36:20", datetime(2017, 10, 31, 23, 36, 20, tzinfo=UTC)),
        ("2017-10-31T23:36:20.5-01:00", datetime(2017, 11, 1, 0, 36, 20, 500000, tzinfo=UTC)),
        ("1509492980", datetime(2017, 10, 31, 23, 36, 20, tzinfo=UTC)),
        ("1509492980.25", datetime(2017, 10, 31, 23, 36, 20, 250000, tzinfo=UTC)),
        ("1509492980000", datetime(2017, 10, 31, 23, 36, 20, tzinfo=UTC)),
        ("Tue, 31 Oct 2017 23:36:20 +0000", datetime(2017, 10, 31, 23, 36, 20, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_formats(value, expected):
    assert parse_timestamp(value) == expected


def test_parse_timestamp_custom_format_and_garbage():
    assert parse_timestamp("31/10/2017 23:36", "%d/%m/%Y %H:%M") == datetime(2017, 10, 31, 23, 36, tzinfo=UTC)
    for bad in ("", "soon", "Tue Foo 31 23:36:20 +0000 2017", "2017-13-45"):
        with pytest.raises(RowRejected):
            parse_timestamp(bad)


@pytest.mark.parametrize(("value", "expected"), [("848.0", "848"), ("848", "848"), (" 848.00 ", "848"),
                                                 ("8.48e2", "848"), ("848.5", "848.5"), ("abc.0", "abc.0"),
                                                 ("", ""), ("t-1.0", "t-1.0")])
def test_normalise_id(value, expected):
    assert normalise_id(value) == expected


# --- Connector and command ----------------------------------------------------------------------
def test_file_import_connector_is_inert_and_validates_config(importer):
    from listening.connectors.fileimport import FileImportConnector

    backend = importer.get_backend()
    assert not backend.polls and not backend.receives_webhooks
    with pytest.raises(NotSupported):
        backend.send(OutboundReply(text="hi", channel="twitter", recipient_id="1"))
    assert FileImportConnector.validate_config({})["channel"] == "import"
    for bad in ({"channel": "Not A Channel"}, {"mapping": {"colour": "x"}}, {"mapping": {"text": ""}}):
        with pytest.raises(ConfigInvalid):
            FileImportConnector.validate_config(bad)


def test_import_uses_the_connectors_saved_mapping(make_connector, tmp_path):
    connector = make_connector("import", config={"mapping": {"text": "body", "author": "who", "sent_at": "at"},
                                                 "channel": "email"})
    path = write_csv(tmp_path / "m.csv", ["id", "who", "at", "body"], [["1", "a@x", "2026-11-01", "hi"]])
    assert import_file(connector, path).created == 1
    assert Message.objects.get().channel == "email"


def test_import_messages_command_creates_connector_and_reruns_with_saved_mapping(db, tmp_path):
    path = write_csv(tmp_path / "tweets.csv", ["tweet_id", "author_id", "created_at", "text", "inbound"],
                     [["1.0", "9", "Tue Oct 31 23:36:20 +0000 2017", "help", "True"],
                      ["2.0", "10", "Tue Oct 31 23:40:00 +0000 2017", "sorry!", "False"],
                      ["3.0", "9", "whenever", "bad date", "True"]])
    out, err = io.StringIO(), io.StringIO()
    call_command("import_messages", str(path), "--connector", "old-tweets", "--create", "--channel", "twitter",
                 "--map", "id=tweet_id", "--map", "author=author_id", "--map", "sent_at=created_at",
                 "--map", "direction=inbound", stdout=out, stderr=err)
    assert "created import connector 'old-tweets'" in out.getvalue()
    assert "3 rows: 2 stored, 0 already stored, 1 rejected" in out.getvalue()
    assert "line 4: unrecognised date 'whenever'" in err.getvalue()
    connector = Connector.objects.get(slug="old-tweets")
    assert connector.kind == "import" and connector.config["channel"] == "twitter"
    assert sorted(Message.objects.values_list("external_id", "direction")) == [("1", "in"), ("2", "out")]

    out = io.StringIO()
    call_command("import_messages", str(path), "--connector", "old-tweets", stdout=out, stderr=io.StringIO())
    assert "3 rows: 0 stored, 2 already stored, 1 rejected" in out.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--connector", "nobody"], "pass --create"),
        (["--connector", "x", "--create", "--map", "text"], "FIELD=COLUMN"),
        (["--connector", "Bad Slug", "--create"], "not a valid slug"),
        (["--connector", "x", "--create", "--map", "shoe=text"], "unknown fields"),
    ],
)
def test_import_messages_command_refuses_bad_arguments(db, tmp_path, args, message):
    path = write_csv(tmp_path / "a.csv", ["id", "author", "sent_at", "text"], [["1", "a", "2026-11-01", "t"]])
    with pytest.raises(CommandError, match=message):
        call_command("import_messages", str(path), *args, stdout=io.StringIO())
    assert not Message.objects.exists()


def test_import_messages_command_missing_file(make_connector):
    make_connector("import", slug="hist")
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_messages", "/nonexistent/file.csv", "--connector", "hist", stdout=io.StringIO())


def test_import_twcs_map_threads_are_by_connector(importer, tmp_path):
    """Conversations are keyed per connector: the same ids in two connectors never merge."""
    path = write_csv(tmp_path / "t.csv", ["id", "author", "sent_at", "text"], [["1", "a", "2026-11-01", "t"]])
    other = Connector.objects.create(kind="import", name="other", slug="other")
    import_file(importer, path)
    import_file(other, path)
    by_connector = defaultdict(set)
    for connector_id, conversation in Message.objects.values_list("connector_id", "conversation_id"):
        by_connector[connector_id].add(conversation)
    assert len(by_connector) == 2 and not set.intersection(*by_connector.values())
