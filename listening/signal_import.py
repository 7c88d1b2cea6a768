"""Import signals from a CSV file (a CRM or billing export), streamed in batches through
listening.signal_actions.ingest_signals, reusing listening.importing's CSV reader and report: a
bad row is counted, reported with its line and recorded as a SignalRejection; it never stops the
run, and a re-run stores nothing twice (the (source, external_id) constraint).

Columns: `id`, `type` (required); `occurred_at` (ISO 8601 or Unix seconds; empty: now);
`email`, `phone`, `channel` + `contact_id` (any one names the customer) and/or `device_id`;
`payload` (a JSON object) and/or `payload.<field>` columns, converted to the type the signal
kind declares for that field ("3" becomes 3 for an NPS score).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from listening.exceptions import ConfigInvalid, PayloadInvalid
from listening.importing import MAX_ERRORS, ImportReport, RowError, _csv_header, _csv_rows
from listening.signal_actions import InboundSignal, ingest_signals, parse_signal, record_rejections
from listening.signal_types import SIGNAL_TYPES

REQUIRED = ("id", "type")
IDENTIFIER_COLUMNS = ("email", "phone", "channel", "contact_id")


def import_signals_file(path: str | Path, *, source: str = "csv", batch_size: int = 500,
                        max_errors: int = MAX_ERRORS) -> ImportReport:
    path = Path(path)
    header = _csv_header(path)
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise ConfigInvalid(f"{path.name} lacks the column(s) {', '.join(missing)}")
    report = ImportReport()
    started = time.monotonic()
    batch: list[tuple[int, InboundSignal, dict]] = []
    for line, row in _csv_rows(path):
        report.rows += 1
        if isinstance(row, RowError):
            report.reject(row, max_errors)
            record_rejections(source, [("", row.reason, "")])
            continue
        try:
            batch.append((line, parse_signal(_item(row), f"line {line}"), row))
        except PayloadInvalid as exc:
            report.reject(RowError(line, str(exc)), max_errors)
            record_rejections(source, [(row.get("id", ""), str(exc), row)])
            continue
        if len(batch) >= batch_size:
            _store(source, batch, report, max_errors)
            batch = []
    if batch:
        _store(source, batch, report, max_errors)
    report.seconds = time.monotonic() - started
    return report


def _item(row: dict[str, str]) -> dict[str, Any]:
    kind = SIGNAL_TYPES.get(row.get("type", ""))
    declared = {spec.name: spec.kind for spec in kind.fields} if kind else {}
    payload: dict[str, Any] = {}
    if row.get("payload", "").strip():
        try:
            payload = json.loads(row["payload"])
        except ValueError:
            raise PayloadInvalid("the payload column is not JSON") from None
        if not isinstance(payload, dict):
            raise PayloadInvalid("the payload column must hold a JSON object")
    for column, value in row.items():
        if column.startswith("payload.") and value.strip():
            name = column.removeprefix("payload.")
            payload[name] = _convert(value.strip(), declared.get(name, str), name)
    customer = {name: row[name].strip() for name in IDENTIFIER_COLUMNS if row.get(name, "").strip()}
    item: dict[str, Any] = {"id": row.get("id", "").strip(), "type": row.get("type", "").strip(), "payload": payload}
    if customer:
        item["customer"] = customer
    for name in ("device_id", "occurred_at"):
        if row.get(name, "").strip():
            item[name] = row[name].strip()
    if str(item.get("occurred_at", "")).replace(".", "", 1).isdigit():
        item["occurred_at"] = float(item["occurred_at"])
    return item


def _convert(value: str, kind: type, name: str) -> Any:
    try:
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
        if kind is bool:
            return value.lower() in {"true", "1", "yes", "y", "t"}
    except ValueError:
        raise PayloadInvalid(f"payload.{name} must be a number, not {value[:30]!r}") from None
    return value


def _store(source: str, batch: list[tuple[int, InboundSignal, dict]], report: ImportReport, max_errors: int) -> None:
    lines = {signal.external_id: (line, row) for line, signal, row in batch}
    result = ingest_signals(source, [signal for _, signal, _ in batch], strict=False)
    report.created += result.created
    report.duplicates += result.duplicates
    for external_id, reason in result.rejected:
        line, _ = lines[external_id]
        report.reject(RowError(line, f"{external_id[:60]}: {reason}"), max_errors)
    record_rejections(source, [(i, reason, lines[i][1]) for i, reason in result.rejected])
