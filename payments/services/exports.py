"""Payment exports: one list of columns, formula-safe cells, streamed writers.

Every path writes the same columns (`COLUMNS`, also the import-export
resource's), with the same cell rules:

- text cells that a spreadsheet would run as a formula (starting with
  = + - @, a tab or a carriage return) get a leading `'`; numbers, including
  negative amounts, stay numbers;
- amounts at their currency's precision, dates in UTC.

CSV on PostgreSQL is one `COPY (SELECT ...) TO STDOUT` whose SELECT formats
and neutralises every cell itself (`_copy_expressions`); elsewhere, and for
XLSX (openpyxl's write-only mode), rows come from a chunked iterator and are
formatted in Python (`cell_converters`). Either way no more than a chunk of
rows is in memory, whatever the row count.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import IO, Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import DatabaseError, connections, transaction
from django.db.models import CharField, F, Func, QuerySet
from django.utils import timezone

from gateways.money import THREE_DECIMAL, ZERO_DECIMAL, quantize

from .. import selectors
from ..models import ExportFormat, ExportJob, ExportStatus

logger = logging.getLogger(__name__)

# A cell starting with one of these is run as a formula by Excel, LibreOffice
# or Google Sheets (OWASP "CSV injection"; ASVS 1.2.10).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHUNK_ROWS = 5000
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
CRLF = "\r\n"

TEXT, DATETIME, MONEY, DECIMAL, FLAG = "text", "datetime", "money", "decimal", "flag"


@dataclass(frozen=True)
class Column:
    """One exported column: resource field name, header, source, kind of cell."""

    name: str
    header: str
    source: str
    kind: str


COLUMNS: tuple[Column, ...] = (
    Column("reference", "Reference", "ref_id", TEXT),
    Column("created", "Created (UTC)", "date_created", DATETIME),
    Column("paid", "Paid (UTC)", "date_paid", DATETIME),
    Column("email", "E-mail", "email", TEXT),
    Column("plan", "Plan", "plan__name", TEXT),
    Column("gateway", "Gateway", "payment_gateway", TEXT),
    Column(
        "gateway_transaction_id",
        "Gateway transaction id",
        "gateway_transaction_id",
        TEXT,
    ),
    Column("status", "Status", "status", TEXT),
    Column("currency", "Currency", "currency", TEXT),
    Column("amount", "Amount", "amount", MONEY),
    Column("amount_paid", "Amount paid", "amount_paid", MONEY),
    Column("amount_refunded", "Amount refunded", "amount_refunded", MONEY),
    Column("net", "Net", "net", MONEY),
    Column("crypto_currency", "Crypto currency", "crypto_currency", TEXT),
    Column("crypto_amount", "Crypto amount", "crypto_amount", DECIMAL),
    Column("needs_review", "Needs review", "needs_review", FLAG),
)
HEADERS: tuple[str, ...] = tuple(column.header for column in COLUMNS)
# Computed columns: net = what stays with us after refunds.
ANNOTATIONS = {"net": F("amount_paid") - F("amount_refunded")}
CONTENT_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.XLSX: (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    ),
}


def neutralise(value: Any) -> Any:
    """Return a text cell with a leading ' if a spreadsheet would run it."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def flag_text(value: bool | None) -> str:
    return "yes" if value else "no"


def decimal_text(value: Decimal | None) -> str:
    """Show a crypto amount without trailing zeros ("0.00012")."""
    if value is None:
        return ""
    return format(value.normalize(), "f")


# -- rows in Python (SQLite CSV, XLSX) -------------------------------------------------


def cell_converters(*, for_xlsx: bool) -> list[Callable[[Any, str], Any]]:
    """Return one converter per column, called with (value, row's currency)."""

    def text(value, currency):
        return "" if value is None else neutralise(value)

    def money(value, currency):
        if value is None:
            return None if for_xlsx else ""
        amount = quantize(value, currency)
        return amount if for_xlsx else format(amount, "f")

    def date(value, currency):
        if value is None:
            return None if for_xlsx else ""
        value = value.astimezone(UTC).replace(tzinfo=None, microsecond=0)
        return value if for_xlsx else value.strftime(DATE_FORMAT)

    def crypto(value, currency):
        if for_xlsx:
            return value
        return decimal_text(value)

    def flag(value, currency):
        return flag_text(value)

    by_kind = {TEXT: text, MONEY: money, DATETIME: date, DECIMAL: crypto, FLAG: flag}
    return [by_kind[column.kind] for column in COLUMNS]


def _source_queryset(queryset: QuerySet) -> QuerySet:
    return queryset.annotate(**ANNOTATIONS).values_list(
        *(column.source for column in COLUMNS)
    )


def payment_rows(queryset: QuerySet, *, for_xlsx: bool = False) -> Iterator[list]:
    """Yield the formatted, formula-safe cells of each payment, chunk by chunk."""
    converters = list(enumerate(cell_converters(for_xlsx=for_xlsx)))
    currency_at = [column.source for column in COLUMNS].index("currency")
    # On PostgreSQL the iterator is a server-side cursor: inside a transaction
    # it streams; in autocommit it would be WITH HOLD, materialised first.
    # (SQLite opens its transactions IMMEDIATE: a long read would hold the
    # write lock, so it reads in autocommit, chunk by chunk.)
    snapshot = (
        transaction.atomic(using=queryset.db) if uses_copy(queryset) else nullcontext()
    )
    with snapshot:
        for row in _source_queryset(queryset).iterator(chunk_size=CHUNK_ROWS):
            currency = row[currency_at]
            yield [convert(row[i], currency) for i, convert in converters]


# -- rows in SQL (PostgreSQL COPY) --------------------------------------------------------


class SqlCell(Func):
    """A cell formatted by SQL: `template` with {x} for the column, {c} its currency.

    The columns are plain column references (no parameters), so each may be
    repeated in the template.
    """

    output_field = CharField()

    def __init__(self, template: str, value, currency=None):
        expressions = [value] if currency is None else [value, currency]
        super().__init__(*expressions, output_field=CharField())
        self.sql_template = template

    def as_sql(self, compiler, connection, **extra_context):
        parts = {}
        for key, expression in zip("xc", self.get_source_expressions(), strict=False):
            sql, params = compiler.compile(expression)
            if params:
                raise ValueError("a formatted cell takes plain columns only")
            parts[key] = sql
        return self.sql_template.format(**parts), ()


def _sql_list(codes: Iterable[str]) -> str:
    return ", ".join(f"'{code}'" for code in sorted(codes) if code.isalpha())


# One integer compare per cell: the first character's code (= + - @ tab CR).
NEUTRALISE_SQL = (
    "CASE WHEN ascii({x}) IN ("
    + ", ".join(str(ord(c)) for c in FORMULA_STARTS)
    + ") THEN '''' || {x} ELSE coalesce({x}, '') END"
)
# One hashed look-up per amount in the common case (2 decimals); codes are
# compared byte by byte ("C" collation), not by the locale's rules.
MONEY_SQL = (
    f'(CASE WHEN {{c}} COLLATE "C" IN ({_sql_list(ZERO_DECIMAL | THREE_DECIMAL)}) '
    f'THEN (CASE WHEN {{c}} COLLATE "C" IN ({_sql_list(THREE_DECIMAL)}) '
    "THEN round({x}, 3) ELSE round({x}, 0) END) "
    "ELSE round({x}, 2) END)::text"
)
# The COPY runs with DateStyle ISO: "YYYY-MM-DD HH:MM:SS".
DATE_SQL = "date_trunc('second', {x} AT TIME ZONE 'UTC')::text"
DECIMAL_SQL = "CASE WHEN {x} = 0 THEN '0' ELSE rtrim(rtrim(({x})::text, '0'), '.') END"
FLAG_SQL = "CASE WHEN {x} THEN 'yes' ELSE 'no' END"


def _copy_expressions() -> dict[str, Func]:
    cells = {}
    for i, column in enumerate(COLUMNS):
        value = ANNOTATIONS.get(column.source, F(column.source))
        if column.kind == TEXT:
            cell = SqlCell(NEUTRALISE_SQL, value)
        elif column.kind == MONEY:
            cell = SqlCell(MONEY_SQL, value, F("currency"))
        elif column.kind == DATETIME:
            cell = SqlCell(DATE_SQL, value)
        elif column.kind == DECIMAL:
            cell = SqlCell(DECIMAL_SQL, value)
        else:
            cell = SqlCell(FLAG_SQL, value)
        cells[f"export_{i}"] = cell
    return cells


def copy_statement(queryset: QuerySet) -> tuple[str, tuple]:
    """Return the `COPY (SELECT ...) TO STDOUT` of a queryset's formatted rows."""
    cells = _copy_expressions()
    select = queryset.annotate(**cells).values_list(*cells)
    sql, params = select.query.get_compiler(using=select.db).as_sql()
    return f"COPY ({sql}) TO STDOUT (FORMAT csv)", tuple(params)


def uses_copy(queryset: QuerySet) -> bool:
    return connections[queryset.db].vendor == "postgresql"


# -- writers ---------------------------------------------------------------------------------

Progress = Callable[[int], None]


def _no_progress(rows: int) -> None:
    return None


def write_csv(
    queryset: QuerySet, out: IO[bytes], *, progress: Progress = _no_progress
) -> int:
    """Write the payments as UTF-8 CSV (header first); return the row count.

    COPY ends lines with LF; Python's csv module is given CRLF, because it
    quotes a field holding a carriage return only when CR ends its lines.
    """
    if uses_copy(queryset):
        out.write(_csv_line(HEADERS, "\n"))
        return _copy_csv(queryset, out, progress)
    out.write(_csv_line(HEADERS))
    rows = 0
    buffer = _LineBuffer()
    writer = csv.writer(buffer, lineterminator=CRLF)
    for row in payment_rows(queryset):
        writer.writerow(row)
        rows += 1
        if rows % CHUNK_ROWS == 0:
            out.write(buffer.take())
            progress(rows)
    out.write(buffer.take())
    return rows


def _copy_csv(queryset: QuerySet, out: IO[bytes], progress: Progress) -> int:
    statement, params = copy_statement(queryset)
    connection = connections[queryset.db]
    rows = 0
    # In a transaction: the statement sees one snapshot, even when the caller
    # runs in autocommit.
    with transaction.atomic(using=queryset.db), connection.cursor() as cursor:
        cursor.execute("SET LOCAL DateStyle TO 'ISO, YMD'")
        with cursor.cursor.copy(statement, params) as copy:
            # PostgreSQL sends one message per row.
            for data in copy:
                out.write(data)
                rows += 1
                if rows % CHUNK_ROWS == 0:
                    progress(rows)
    return rows


class _LineBuffer:
    """A file-like target for csv.writer that hands its text back as bytes."""

    def __init__(self):
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def take(self) -> bytes:
        data = "".join(self.parts).encode()
        self.parts.clear()
        return data


def _csv_line(cells: Iterable[Any], terminator: str = "\r\n") -> bytes:
    buffer = _LineBuffer()
    csv.writer(buffer, lineterminator=terminator).writerow(cells)
    return buffer.take()


XLSX_WIDTHS = [26, 20, 20, 32, 24, 14, 26, 20, 9, 12, 12, 12, 12, 10, 16, 8]


def write_xlsx(
    queryset: QuerySet, out: IO[bytes] | str, *, progress: Progress = _no_progress
) -> int:
    """Write the payments as one XLSX sheet; return the row count.

    The workbook is openpyxl's (write-only mode: package, styles, column
    widths, header row). On PostgreSQL the rows' XML comes from one COPY
    whose SELECT writes each row's cells (openpyxl's cell by cell writer
    manages about 5,000 rows a second, far too slow at a million) and is
    spliced into openpyxl's sheet; elsewhere openpyxl appends the rows.
    """
    if uses_copy(queryset):
        return _xlsx_from_copy(queryset, out, progress)
    return write_xlsx_rows(
        "Payments",
        HEADERS,
        payment_rows(queryset, for_xlsx=True),
        out,
        progress=progress,
        widths=XLSX_WIDTHS,
    )


def _xlsx_shell(date_style_probe: bool = True) -> tuple[bytes, int]:
    """Return openpyxl's workbook with the header row only, and its date style id."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.utils import get_column_letter

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Payments")
    for i, width in enumerate(XLSX_WIDTHS, 1):
        sheet.column_dimensions[get_column_letter(i)].width = width
    sheet.append(list(HEADERS))
    # Registers openpyxl's date format in the workbook's styles.
    date_style = WriteOnlyCell(sheet, value=datetime(2000, 1, 1)).style_id
    shell = io.BytesIO()
    workbook.save(shell)
    return shell.getvalue(), date_style


def _xlsx_from_copy(
    queryset: QuerySet, out: IO[bytes] | str, progress: Progress
) -> int:
    shell, date_style = _xlsx_shell()
    statement, params = xlsx_copy_statement(queryset, date_style=date_style)
    connection = connections[queryset.db]
    rows = 0
    with tempfile.TemporaryFile() as sheet_rows:
        with (
            transaction.atomic(using=queryset.db),
            connection.cursor() as cursor,
            cursor.cursor.copy(statement, params) as copy,
        ):
            for data in copy:
                sheet_rows.write(data)
                rows += 1
                if rows % CHUNK_ROWS == 0:
                    progress(rows)
        sheet_rows.seek(0)
        _splice_rows(shell, sheet_rows, out)
    return rows


def _splice_rows(shell: bytes, sheet_rows: IO[bytes], out: IO[bytes] | str) -> None:
    """Copy openpyxl's package to `out`, the rows' XML added to its sheet."""
    sheet_name = "xl/worksheets/sheet1.xml"
    with (
        zipfile.ZipFile(io.BytesIO(shell)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as target,
    ):
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename != sheet_name:
                target.writestr(info, data)
                continue
            head, tail = data.split(b"</sheetData>", 1)
            with target.open(sheet_name, "w", force_zip64=True) as sheet:
                sheet.write(head)
                shutil.copyfileobj(sheet_rows, sheet, 1 << 20)
                sheet.write(b"</sheetData>" + tail)


# Characters XML 1.0 forbids (openpyxl refuses them too) are dropped; PostgreSQL
# text never holds NUL.
XML_ILLEGAL = "".join(chr(c) for c in range(1, 32) if c not in (9, 10, 13))
# What makes a value need escaping in XML (a regex, PostgreSQL's syntax).
XML_SPECIAL = "[&<>\\x01-\\x1f]"
XML_TEXT_SQL = (
    "replace(replace(replace(replace(replace(translate({v}, "
    + "".join(f"chr({ord(c)}) || " for c in XML_ILLEGAL[:-1])
    + f"chr({ord(XML_ILLEGAL[-1])}), ''), "
    "'&', '&amp;'), '<', '&lt;'), '>', '&gt;'), chr(13), '&#13;'), chr(10), '&#10;')"
)


def _xlsx_cell_sql(kind: str, date_style: int) -> str:
    if kind == TEXT:
        text = f"({NEUTRALISE_SQL})"
        # Escaping only the rare values that need it: one regex test per cell
        # instead of six string scans (a third of the time at a million rows).
        escaped = (
            f"CASE WHEN {{x}} ~ '{XML_SPECIAL}' "
            f"THEN {XML_TEXT_SQL.format(v=text)} ELSE {text} END"
        )
        return (
            "CASE WHEN coalesce({x}, '') = '' THEN '<c/>' ELSE "
            '\'<c t="inlineStr"><is><t xml:space="preserve">\' || '
            + escaped
            + " || '</t></is></c>' END"
        )
    if kind == MONEY:
        return f"'<c><v>' || {MONEY_SQL} || '</v></c>'"
    if kind == DATETIME:
        # Excel's serial date: days since 1899-12-30, in UTC, whole seconds.
        return (
            "CASE WHEN {x} IS NULL THEN '<c/>' ELSE "
            f"'<c s=\"{int(date_style)}\"><v>' || "
            "(floor(extract(epoch FROM {x})) / 86400 + 25569)::text || '</v></c>' END"
        )
    if kind == DECIMAL:
        return (
            "CASE WHEN {x} IS NULL THEN '<c/>' ELSE "
            f"'<c><v>' || {DECIMAL_SQL} || '</v></c>' END"
        )
    return f"'<c t=\"inlineStr\"><is><t>' || {FLAG_SQL} || '</t></is></c>'"


def xlsx_copy_statement(queryset: QuerySet, *, date_style: int) -> tuple[str, tuple]:
    """Return a COPY giving one sheet row of XML per payment (one field)."""
    cells = []
    for column in COLUMNS:
        value = ANNOTATIONS.get(column.source, F(column.source))
        currency = F("currency") if column.kind == MONEY else None
        cells.append((_xlsx_cell_sql(column.kind, date_style), value, currency))
    select = queryset.annotate(export_row=SqlRow(cells)).values_list("export_row")
    sql, params = select.query.get_compiler(using=select.db).as_sql()
    # CSV with a delimiter and quote the XML never holds: fields are not
    # quoted (newlines inside cells are written as character references).
    options = "FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02'"
    return f"COPY ({sql}) TO STDOUT ({options})", tuple(params)


class SqlRow(Func):
    """One row of XML: each (template, value, currency) cell, concatenated."""

    def __init__(self, cells):
        self.templates = [template for template, _, _ in cells]
        expressions = []
        self.shapes = []
        for _, value, currency in cells:
            expressions.append(value)
            if currency is not None:
                expressions.append(currency)
            self.shapes.append(currency is not None)
        super().__init__(*expressions, output_field=CharField())

    def as_sql(self, compiler, connection, **extra_context):
        compiled = []
        for expression in self.get_source_expressions():
            sql, params = compiler.compile(expression)
            if params:
                raise ValueError("a formatted cell takes plain columns only")
            compiled.append(sql)
        parts, at = [], 0
        for template, has_currency in zip(self.templates, self.shapes, strict=True):
            values = {"x": compiled[at]}
            at += 1
            if has_currency:
                values["c"] = compiled[at]
                at += 1
            parts.append("(" + template.format(**values) + ")")
        return "'<row>' || " + " || ".join(parts) + " || '</row>'", ()


def write_xlsx_rows(
    title: str,
    headers: Iterable[str],
    rows: Iterable[list],
    out: IO[bytes] | str,
    *,
    progress: Progress = _no_progress,
    widths: list[int] | None = None,
) -> int:
    """Write rows (already formula-safe) to a one-sheet workbook, streaming."""
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title)
    for i, width in enumerate(widths or (), 1):
        sheet.column_dimensions[get_column_letter(i)].width = width
    sheet.append(list(headers))
    count = 0
    for row in rows:
        sheet.append(row)
        count += 1
        if count % CHUNK_ROWS == 0:
            progress(count)
    workbook.save(out)
    return count


def write_export(queryset: QuerySet, fmt: str, out: IO[bytes], **kwargs) -> int:
    """Write `queryset` in format `fmt` ("csv" or "xlsx"); return the row count."""
    if fmt == ExportFormat.XLSX:
        return write_xlsx(queryset, out, **kwargs)
    return write_csv(queryset, out, **kwargs)


def export_filename(fmt: str, *, job_id: int | None = None) -> str:
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    middle = f"-{job_id}" if job_id else ""
    return f"payments{middle}-{stamp}.{fmt}"


# -- the background job ---------------------------------------------------------------------


def export_job_create(*, user, filters: str, fmt: str) -> ExportJob:
    """Record an export job; the caller queues it once this is committed."""
    if fmt not in ExportFormat.values:
        raise ValueError(f"unknown export format {fmt!r}")
    return ExportJob.objects.create(requested_by=user, filters=filters, format=fmt)


def export_job_run(*, job_id: int) -> ExportJob:
    """Write a queued job's file, reporting progress; safe to run twice.

    The rows are `selectors.payment_list` of the job's stored filters, as the
    payment list showed them. Only a QUEUED job is claimed, so a second
    delivery of the task does nothing.
    """
    now = timezone.now()
    claimed = ExportJob.objects.filter(pk=job_id, status=ExportStatus.QUEUED).update(
        status=ExportStatus.RUNNING, started_at=now, progress=0
    )
    job = ExportJob.objects.select_related("requested_by").get(pk=job_id)
    if not claimed:
        return job
    name = f"exports/{export_filename(job.format, job_id=job.pk)}"
    path = default_storage.path(name)
    partial = f"{path}.part"
    reporter = _ProgressReporter(job.pk, using=ExportJob.objects.db)
    try:
        if not job.requested_by.has_perm("payments.export_payment"):
            raise PermissionError("the requester may no longer export payments")
        queryset = selectors.payment_list(
            filters=selectors.payment_filters_from_query(job.filters)
        )
        expected = queryset.count()
        ExportJob.objects.filter(pk=job.pk).update(expected_rows=expected)
        reporter.expected = expected
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with _private_file(partial) as out:
            rows = write_export(queryset, job.format, out, progress=reporter)
        os.replace(partial, path)
    except Exception as exc:  # recorded on the job, shown to its requester
        _remove(partial)
        finished = timezone.now()
        ExportJob.objects.filter(pk=job.pk).update(
            status=ExportStatus.FAILED,
            finished_at=finished,
            error=f"{type(exc).__name__}: {exc}"[:2000],
        )
        job.refresh_from_db()
        return job
    finally:
        reporter.close()
    finished = timezone.now()
    ExportJob.objects.filter(pk=job.pk).update(
        status=ExportStatus.DONE,
        progress=100,
        row_count=rows,
        file=name,
        file_size=os.path.getsize(path),
        finished_at=finished,
        expires_at=finished + timedelta(days=settings.EXPORT_RETENTION_DAYS),
    )
    job.refresh_from_db()
    return job


class _ProgressReporter:
    """Write a job's percentage as rows are written, at most once per 2 %.

    Through a connection of its own, committed at once: the rows are read in
    a transaction on PostgreSQL (and COPY holds its connection), and on
    SQLite a write from the reading connection fails once another process
    has written since the read began. The percentage is advisory: a write
    that cannot be made within a second is skipped.
    """

    STEP = 2

    def __init__(self, job_id: int, *, using: str):
        self.job_id = job_id
        self.expected = 0
        self.shown = 0
        self.using = using
        self.connection = None

    def __call__(self, rows: int) -> None:
        if not self.expected:
            return
        percent = min(99, rows * 100 // self.expected)
        if percent < self.shown + self.STEP:
            return
        self.shown = percent
        table = ExportJob._meta.db_table
        try:
            with self._connection().cursor() as cursor:
                cursor.execute(
                    f'UPDATE "{table}" SET progress = %s WHERE id = %s AND progress < %s',  # noqa: S608
                    [percent, self.job_id, percent],
                )
        except DatabaseError:
            logger.info("export %s: progress %s%% not recorded", self.job_id, percent)

    def _connection(self):
        if self.connection is None:
            shared = connections[self.using]
            params = copy.deepcopy(shared.settings_dict)
            if shared.vendor == "sqlite":
                params["OPTIONS"] = {**params.get("OPTIONS", {}), "timeout": 1}
            self.connection = type(shared)(params, alias=self.using)
        return self.connection

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


def _private_file(path: str) -> IO[bytes]:
    """Open a new file that only this account may read (0600, whatever the umask).

    Export files hold customers' e-mail addresses; a leftover file of a
    crashed run is replaced, not reopened with its old mode.
    """
    _remove(path)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(descriptor, "wb")


def _remove(path: str) -> None:
    with suppress(FileNotFoundError):
        os.remove(path)


def exports_purge_expired(
    *, now: datetime | None = None, stale_after: timedelta | None = None
) -> int:
    """Delete the files of finished exports past their expiry; return how many.

    With `stale_after`, a job still RUNNING that long after it started lost its
    worker (killed, or past its task timeout): it is marked FAILED, so its
    requester sees it ended and can export again, and its partial file goes.
    """
    now = now or timezone.now()
    if stale_after is not None:
        for job in ExportJob.objects.filter(
            status=ExportStatus.RUNNING, started_at__lt=now - stale_after
        ).only("pk", "format"):
            name = f"exports/{export_filename(job.format, job_id=job.pk)}"
            _remove(f"{default_storage.path(name)}.part")
            ExportJob.objects.filter(pk=job.pk, status=ExportStatus.RUNNING).update(
                status=ExportStatus.FAILED,
                finished_at=now,
                error="the export stopped without finishing (its worker ended); "
                "export again",
            )
    purged = 0
    expired = ExportJob.objects.filter(status=ExportStatus.DONE, expires_at__lte=now)
    for job in expired.only("pk", "file"):
        if job.file:
            default_storage.delete(job.file.name)
        purged += ExportJob.objects.filter(pk=job.pk, status=ExportStatus.DONE).update(
            status=ExportStatus.EXPIRED, file=""
        )
    return purged


def export_to_temporary(queryset: QuerySet, fmt: str) -> tuple[IO[bytes], int]:
    """Write a small export to a temporary file, rewound; return it and its rows."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 (the response closes it)
    rows = write_export(queryset, fmt, out)
    out.seek(0)
    return out, rows


# -- the settlement summary --------------------------------------------------------------------


def settlement_cells(
    rows: Iterable, totals: Iterable, *, for_xlsx: bool
) -> Iterator[list]:
    """Yield the summary's cells: amounts at currency precision, totals last."""

    def amount(value: Decimal, currency: str):
        value = quantize(value, currency)
        return value if for_xlsx else format(value, "f")

    for row in rows:
        yield [
            row.day if for_xlsx else row.day.isoformat(),
            neutralise(row.gateway),
            neutralise(row.currency),
            row.count,
            amount(row.paid, row.currency),
            amount(row.refunded, row.currency),
            amount(row.net, row.currency),
        ]
    for row in totals:
        yield [
            "Total",
            "",
            neutralise(row.currency),
            row.count,
            amount(row.paid, row.currency),
            amount(row.refunded, row.currency),
            amount(row.net, row.currency),
        ]


def settlement_to_temporary(rows: list, totals: list, fmt: str) -> IO[bytes]:
    """Write the settlement summary (a few hundred rows) to a rewound file."""
    from ..selectors import SETTLEMENT_HEADERS

    out = tempfile.TemporaryFile()  # noqa: SIM115 (the response closes it)
    if fmt == ExportFormat.XLSX:
        write_xlsx_rows(
            "Settlement",
            SETTLEMENT_HEADERS,
            settlement_cells(rows, totals, for_xlsx=True),
            out,
            widths=[12, 14, 9, 10, 14, 14, 14],
        )
    else:
        out.write(_csv_line(SETTLEMENT_HEADERS))
        for cells in settlement_cells(rows, totals, for_xlsx=False):
            out.write(_csv_line(cells))
    out.seek(0)
    return out
