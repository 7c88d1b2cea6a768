"""The full-text indexes that responses.search reads, as SQL per database, in one place: the
migrations create them and a post_migrate check restores SQLite triggers a later table rebuild
dropped (Django's SQLite schema editor copies a table to alter it, and its triggers go with the
old table).

PostgreSQL: a GIN index over to_tsvector('simple', <columns>). 'simple' only lower-cases and
splits, so a Japanese, German or Portuguese message is found by its own words; no stemming in a
language the text may not be in. The query side must use the very same expression
(`document(spec)`), or the planner will not use the index.

Messages keep that tsvector in a stored generated column (`stored`), not only in the index: for a
common word the planner walks the newest messages and tests each one, and with an expression index
it recomputes to_tsvector per row (0.6 s for "Premium" over 1.47M messages; with the column it is
a comparison). The column lives outside Django's model (PostgreSQL only; SQLite has FTS5).

SQLite: an FTS5 table with external content (the text is not stored twice), rowid = the row's
id, kept in step by insert, delete and update triggers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Indexed:
    table: str  # the Django table
    columns: tuple[str, ...]
    name: str  # the FTS5 table and the GIN index are named after it
    stored: str = ""  # PostgreSQL: a generated tsvector column holding the document, if any

    @property
    def fts(self) -> str:
        return f"search_{self.name}"


MESSAGE = Indexed("listening_message", ("text",), "message", stored="search_vector")
CONTACT = Indexed("listening_contact", ("handle", "display_name", "email"), "contact")
CUSTOMER = Indexed("listening_customer", ("display_name", "email", "phone"), "customer")
LISTENING_TABLES = (MESSAGE, CONTACT, CUSTOMER)


def document(spec: Indexed, alias: str = "") -> str:
    """The indexed tsvector expression (PostgreSQL), for `alias` or the table itself."""
    prefix = f'"{alias or spec.table}".'
    if spec.stored:
        return f"{prefix}{spec.stored}"
    return _expression(spec, prefix)


def _expression(spec: Indexed, prefix: str = "") -> str:
    if len(spec.columns) == 1:
        body = f"{prefix}{spec.columns[0]}"
    else:
        body = " || ' ' || ".join(f"coalesce({prefix}{c}, '')" for c in spec.columns)
    return f"to_tsvector('simple'::regconfig, {body})"


def pg_create(spec: Indexed) -> list[str]:
    """PostgreSQL statements, idempotent: the stored column (if any) and the GIN index."""
    if not spec.stored:
        return [f"CREATE INDEX IF NOT EXISTS {spec.fts}_idx ON {spec.table} USING gin ({_expression(spec)})"]
    return [f"DROP INDEX IF EXISTS {spec.fts}_idx",  # an expression index from before the column
            f"ALTER TABLE {spec.table} ADD COLUMN IF NOT EXISTS {spec.stored} tsvector "
            f"GENERATED ALWAYS AS ({_expression(spec)}) STORED",
            f"CREATE INDEX IF NOT EXISTS {spec.fts}_vector_idx ON {spec.table} USING gin ({spec.stored})"]


def pg_drop(spec: Indexed) -> list[str]:
    if not spec.stored:
        return [f"DROP INDEX IF EXISTS {spec.fts}_idx"]
    return [f"DROP INDEX IF EXISTS {spec.fts}_vector_idx", f"DROP INDEX IF EXISTS {spec.fts}_idx",
            f"ALTER TABLE {spec.table} DROP COLUMN IF EXISTS {spec.stored}"]


def _sqlite_triggers(spec: Indexed) -> list[str]:
    cols = ", ".join(spec.columns)
    new = ", ".join(f"new.{c}" for c in spec.columns)
    old = ", ".join(f"old.{c}" for c in spec.columns)
    # Identifiers only, from the constant specs above: no outside text reaches this SQL.
    insert = f"INSERT INTO {spec.fts}(rowid, {cols}) VALUES (new.id, {new});"  # noqa: S608
    delete = f"INSERT INTO {spec.fts}({spec.fts}, rowid, {cols}) VALUES ('delete', old.id, {old});"  # noqa: S608
    return [
        f"CREATE TRIGGER IF NOT EXISTS {spec.fts}_ai AFTER INSERT ON {spec.table} BEGIN {insert} END",
        f"CREATE TRIGGER IF NOT EXISTS {spec.fts}_ad AFTER DELETE ON {spec.table} BEGIN {delete} END",
        f"CREATE TRIGGER IF NOT EXISTS {spec.fts}_au AFTER UPDATE OF {cols} ON {spec.table} "
        f"BEGIN {delete} {insert} END",
    ]


def create(connection, specs) -> None:
    with connection.cursor() as cursor:
        for spec in specs:
            if connection.vendor == "postgresql":
                for statement in pg_create(spec):
                    cursor.execute(statement)
            elif connection.vendor == "sqlite":
                # remove_diacritics 2: "cafe" finds "café"; unicode61 splits every script's words.
                cursor.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {spec.fts} USING fts5("
                               f"{', '.join(spec.columns)}, content='{spec.table}', content_rowid='id', "
                               f"tokenize='unicode61 remove_diacritics 2')")
                for statement in _sqlite_triggers(spec):
                    cursor.execute(statement)
                cursor.execute(f"INSERT INTO {spec.fts}({spec.fts}) VALUES ('rebuild')")  # noqa: S608


def drop(connection, specs) -> None:
    with connection.cursor() as cursor:
        for spec in specs:
            if connection.vendor == "postgresql":
                for statement in pg_drop(spec):
                    cursor.execute(statement)
            elif connection.vendor == "sqlite":
                for suffix in ("ai", "ad", "au"):
                    cursor.execute(f"DROP TRIGGER IF EXISTS {spec.fts}_{suffix}")
                cursor.execute(f"DROP TABLE IF EXISTS {spec.fts}")


def heal(connection, specs) -> list[str]:
    """SQLite only: recreate missing FTS tables or triggers and rebuild those indexes (a table
    rebuild by a later migration drops triggers). Returns the names it repaired."""
    if connection.vendor != "sqlite":
        return []
    repaired = []
    with connection.cursor() as cursor:
        existing = {row[0] for row in cursor.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')").fetchall()}
    for spec in specs:
        wanted = {spec.fts, f"{spec.fts}_ai", f"{spec.fts}_ad", f"{spec.fts}_au"}
        if spec.table in existing and not wanted <= existing:
            create(connection, [spec])
            repaired.append(spec.fts)
    return repaired
