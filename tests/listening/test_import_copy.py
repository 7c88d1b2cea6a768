"""File import at COPY speed: replies written once with their parent's id, the rare path where a
concurrent call stored some of a chunk first, and the reader thread that converts one batch ahead."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection

from listening import ingest_sql
from listening.actions import ingest_messages
from listening.connectors.base import InboundAuthor, InboundMessage
from listening.importing import import_file
from listening.models import Contact, Conversation, Message

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def message_updates() -> int:
    """Rows of listening_message updated so far in this transaction (PostgreSQL's own count)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = %s",
                       [Message._meta.db_table])
        found = cursor.fetchone()
    return found[0] if found else 0


def check_foreign_keys() -> None:
    """The message foreign keys are checked at commit, which a test's transaction never reaches."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def thread_csv(path: Path, threads: int) -> Path:
    """Threads of a question and two replies, every reply after its parent in the file."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "author", "sent_at", "text", "in_reply_to"])
        for n in range(threads):
            at = T0 + timedelta(minutes=n)
            writer.writerow([f"q{n}", f"u{n % 40}", at.isoformat(), f"question {n}", ""])
            writer.writerow([f"a{n}", "brand", (at + timedelta(seconds=20)).isoformat(), f"answer {n}", f"q{n}"])
            writer.writerow([f"r{n}", f"u{n % 40}", (at + timedelta(seconds=40)).isoformat(), f"thanks {n}", f"a{n}"])
    return path


@pytest.mark.django_db
def test_replies_in_the_same_chunk_are_written_once_with_their_parent(make_connector, tmp_path):
    importer = make_connector("import", slug="threads")
    before = message_updates()
    report = import_file(importer, thread_csv(tmp_path / "threads.csv", 200), batch_size=300)
    assert (report.created, report.rejected) == (600, 0)
    check_foreign_keys()
    by_id = {m.external_id: m for m in Message.objects.filter(connector=importer)}
    for n in range(200):
        question, answer, thanks = by_id[f"q{n}"], by_id[f"a{n}"], by_id[f"r{n}"]
        assert question.parent_id is None
        assert answer.parent_id == question.pk and thanks.parent_id == answer.pk
        assert question.conversation_id == answer.conversation_id == thanks.conversation_id
    # Each batch's replies had their parent at insert time: no row was written a second time.
    assert message_updates() == before
    assert Conversation.objects.filter(connector=importer).count() == 200
    again = import_file(importer, tmp_path / "threads.csv", batch_size=300)
    assert (again.created, again.duplicates) == (0, 600)


def chunk_rows(importer, external_ids: list[tuple[str, str]]) -> list[tuple]:
    """Message rows in ingest_sql.message_columns() order, as listening.actions builds them."""
    author = Contact.objects.create(channel="import", external_id="ann", first_seen_at=T0, last_seen_at=T0)
    thread = Conversation.objects.create(connector=importer, channel="import", external_id="t", contact=author,
                                         started_at=T0, last_message_at=T0)
    names = ingest_sql.message_columns()[1]
    rows = []
    for n, (external_id, parent) in enumerate(external_ids):
        values = {
            "connector_id": importer.pk, "external_id": external_id, "channel": "import", "direction": "in",
            "conversation_id": thread.pk, "author_id": author.pk, "text": f"text {n}", "url": "",
            "sent_at": T0 + timedelta(seconds=n), "received_at": T0, "parent_id": None,
            "parent_external_id": parent, "raw": {}, "raw_truncated": False, "ingest_batch": None,
        }
        rows.append(tuple(values[name] if name in values else ingest_sql.column_default(name) for name in names))
    return sorted(rows, key=lambda row: row[names.index("external_id")])


@pytest.mark.django_db
def test_a_reply_whose_parent_another_call_stored_first_points_at_the_stored_row(make_connector):
    """The chunk draws ids for all its rows; a row that loses the race to a concurrent call
    (simulated: stored before, and not filtered out) does not use its id, so a reply in the
    chunk must point at the row that was stored, not at the unused id."""
    importer = make_connector("import", slug="race")
    pairs = [("p", "")] + [(f"c{n:03d}", "p") for n in range(ingest_sql.COPY_MIN_ROWS)]
    rows = chunk_rows(importer, pairs)
    at = ingest_sql.message_columns()[1].index("external_id")
    first = ingest_sql.copy_insert([row for row in rows if row[at] == "p"])
    assert len(first) == 1
    stored_parent = first[0][0]
    created = ingest_sql.copy_insert(rows)
    assert {row[1] for row in created} == {f"c{n:03d}" for n in range(ingest_sql.COPY_MIN_ROWS)}
    check_foreign_keys()
    assert set(Message.objects.filter(connector=importer).exclude(external_id="p")
               .values_list("parent_id", flat=True)) == {stored_parent}


@pytest.mark.django_db
def test_ingest_messages_links_in_chunk_parents_for_batched_deliveries_too(make_connector):
    """copy_insert serves every chunk of COPY_MIN_ROWS or more, not only files."""
    connector = make_connector("import", slug="batched")
    author = InboundAuthor(external_id="ann")
    messages = [InboundMessage(external_id=f"m{n:03d}", text=f"text {n}", author=author,
                               sent_at=T0 + timedelta(seconds=n), channel="import",
                               parent_external_id=f"m{n - 1:03d}" if n else "")
                for n in range(ingest_sql.COPY_MIN_ROWS + 10)]
    before = message_updates()
    result = ingest_messages(connector, messages)
    assert len(result.created_ids) == len(messages)
    assert message_updates() == before
    check_foreign_keys()
    parents = dict(Message.objects.filter(connector=connector).values_list("external_id", "parent__external_id"))
    assert parents == {f"m{n:03d}": (f"m{n - 1:03d}" if n else None) for n in range(len(messages))}


@pytest.mark.django_db(transaction=True)
def test_an_unreadable_file_mid_import_is_raised_and_the_reader_stops(make_connector, tmp_path, monkeypatch):
    """The reader thread's exception reaches the caller; batches stored before it stay stored."""
    import listening.importing as importing

    path = tmp_path / "plain.csv"  # no reply column: no first pass for the thread index
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "author", "sent_at", "text"])
        writer.writerows([f"m{n}", f"u{n % 7}", (T0 + timedelta(seconds=n)).isoformat(), f"text {n}"]
                         for n in range(300))
    real = importing._csv_rows

    def failing(path):
        for n, item in enumerate(real(path)):
            if n == 250:
                raise OSError("disk gone")
            yield item

    monkeypatch.setattr(importing, "_csv_rows", failing)
    importer = make_connector("import", slug="failing")
    with pytest.raises(OSError, match="disk gone"):
        import_file(importer, path, batch_size=100)
    assert Message.objects.filter(connector=importer).count() == 200


@pytest.mark.django_db(transaction=True)
def test_a_storage_failure_stops_the_reader_thread(make_connector, tmp_path, monkeypatch):
    import threading

    import listening.importing as importing

    calls = {"n": 0}
    real = importing.ingest_messages

    def failing(connector, messages):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("database gone")
        return real(connector, messages)

    monkeypatch.setattr(importing, "ingest_messages", failing)
    with pytest.raises(RuntimeError, match="database gone"):
        import_file(make_connector("import", slug="stopped"), thread_csv(tmp_path / "t.csv", 300), batch_size=50)
    assert not [t for t in threading.enumerate() if t.name == "cxm-import-reader"]


@pytest.mark.django_db
def test_insert_or_get_by_copy_returns_stored_rows_for_keys_another_call_inserted_first():
    """Sets of COPY_MIN_ROWS or more go through COPY; rows already there (a concurrent call's)
    come back with their stored ids and values, the others with the ids just inserted."""
    stored = {n: Contact.objects.create(channel="import", external_id=f"k{n:03d}", display_name="Stored",
                                        first_seen_at=T0, last_seen_at=T0) for n in range(0, 60, 6)}
    objs = [Contact(channel="import", external_id=f"k{n:03d}", display_name="New", first_seen_at=T0,
                    last_seen_at=T0) for n in range(60)]
    assert len(objs) >= ingest_sql.COPY_MIN_ROWS
    got = {contact.external_id: contact for contact in ingest_sql.insert_or_get(objs, ["channel", "external_id"])}
    assert len(got) == 60
    for n in range(60):
        contact = got[f"k{n:03d}"]
        if n in stored:
            assert (contact.pk, contact.display_name) == (stored[n].pk, "Stored")
        else:
            assert contact.display_name == "New"
            assert Contact.objects.get(pk=contact.pk).external_id == f"k{n:03d}"
    assert Contact.objects.filter(channel="import").count() == 60


@pytest.mark.django_db(transaction=True)
def test_concurrent_large_batches_sharing_contacts_count_every_message_without_deadlock(make_connector):
    """Counters of 50 or more rows are locked in id order before the UPDATE (ingest_sql.bump_sql):
    two threads storing overlapping authors' batches in opposite orders wait, never deadlock,
    and every message is counted once on its contact and conversation."""
    import threading

    from django.db import close_old_connections

    connectors = [make_connector("import", slug=f"side{n}") for n in range(2)]
    authors = [InboundAuthor(external_id=f"shared{n:03d}") for n in range(120)]
    errors: list[BaseException] = []

    def store(side: int) -> None:
        try:
            order = authors if side == 0 else authors[::-1]
            for round_ in range(4):
                ingest_messages(connectors[side], [
                    InboundMessage(external_id=f"s{side}-r{round_}-{n}", text="hello", author=author,
                                   sent_at=T0 + timedelta(seconds=n), channel="import", thread_id=f"t{n % 60}")
                    for n, author in enumerate(order)
                ])
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=store, args=(side,)) for side in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(Contact.objects.filter(channel="import").values_list("message_count", flat=True)) == {8}
    assert sum(Conversation.objects.values_list("message_count", flat=True)) == 2 * 4 * 120
    assert Message.objects.count() == 2 * 4 * 120
