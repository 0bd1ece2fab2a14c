"""What each gold table declares about itself, read from the YAML beside its SQL.

``sql/gold/<table>.sql`` says how a table is built; ``sql/gold/<table>.yml`` says what it is
(the grain, a description of every column, and the checks its rows must pass), like a dbt
schema file. The column names and types are ``pipeline.schema``'s; the YAML only describes
them, and loading fails when the two lists disagree. From these files come:

- the build order (``build_order``): each SQL's FROM/JOIN names that are gold tables are its
  upstream tables, sorted topologically, so no one keeps an ordered list by hand;
- the checks (``compile_checks``/``run_checks``): each one SQL query counting the rows that
  break it, the same on SQLite and PostgreSQL;
- the docs page of tables (``render_docs``): ``python -m pipeline.gold_catalog docs > docs/tables.md``.

``python -m pipeline.gold_catalog check`` runs every declared check on the database in
``DATABASE_URL`` and exits 1 when one fails.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from sqlalchemy import Connection, Table, bindparam, text
from sqlalchemy.sql.elements import TextClause

from pipeline import schema

GOLD_SQL_DIR = Path(__file__).resolve().parent.parent / "sql" / "gold"
DIALECTS = ("sqlite", "postgresql")
CHECK_KINDS = ("not_null", "unique", "accepted_values", "range", "relationships", "expression")


class GoldCatalogError(ValueError):
    """A gold table's SQL or YAML is missing, malformed, disagrees with pipeline.schema, or forms a cycle."""


# -- declarations ---------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One declared check of a gold table, compiled to a query counting the rows that break it."""

    table: str
    kind: str  # one of CHECK_KINDS
    subject: str  # the column, the columns of a combined key, or the expression
    sql: str
    column: str | None = None  # the column it is declared under; None for a table-level check
    detail: str = ""  # e.g. ": 0..100", " -> snapshots.snapshot_at"
    params: Mapping[str, object] = field(default_factory=dict)
    expanding: tuple[str, ...] = ()  # parameters bound as a list (IN :values)

    @property
    def name(self) -> str:
        """E.g. ``range(btc_dominance_pct: 0..100)``; unique within its table."""
        return f"{self.kind}({self.subject}{self.detail})"

    @property
    def label(self) -> str:
        return f"{self.table}: {self.name}"

    def statement(self) -> TextClause:
        clause = text(self.sql)
        if self.expanding:
            clause = clause.bindparams(*(bindparam(name, expanding=True) for name in self.expanding))
        return clause


@dataclass(frozen=True)
class CheckResult:
    check: Check
    failing_rows: int

    @property
    def passed(self) -> bool:
        return self.failing_rows == 0

    def message(self) -> str:
        """What failed, on how many rows, and the query that finds them."""
        return f"{self.check.label} failed on {self.failing_rows} row(s); rows counted by: {self.check.sql}"


@dataclass(frozen=True)
class ColumnDoc:
    name: str
    description: str
    tests: tuple[object, ...]


@dataclass(frozen=True)
class GoldModel:
    """A gold table: its SQL file(s), its YAML declaration and its schema.py definition."""

    name: str
    description: str
    grain: str
    incremental: str | None  # the time column of a table rebuilt only from "since" on
    columns: tuple[ColumnDoc, ...]
    tests: tuple[object, ...]  # table-level: unique over several columns, expressions
    sql_dir: Path

    @property
    def table(self) -> Table:
        return schema.metadata.tables[self.name]

    def sql_path(self, dialect: str) -> Path:
        """``<table>.<dialect>.sql`` if present, else ``<table>.sql``."""
        specific = self.sql_dir / f"{self.name}.{dialect}.sql"
        return specific if specific.exists() else self.sql_dir / f"{self.name}.sql"

    def sql(self, dialect: str) -> str:
        return self.sql_path(dialect).read_text()

    def reads(self, dialect: str | None = None) -> frozenset[str]:
        """Every table the SQL reads (CTE names left out); ``None``: over all dialects' files."""
        dialects = DIALECTS if dialect is None else (dialect,)
        return frozenset().union(*(tables_read(self.sql(d)) for d in dialects))


def load_catalog(sql_dir: Path = GOLD_SQL_DIR) -> dict[str, GoldModel]:
    """Every gold table's declaration, by name, checked against its SQL and pipeline.schema."""
    gold_names = {table.name for table in schema.GOLD_TABLES}
    sql_names = {path.name.split(".")[0] for path in sql_dir.glob("*.sql")}
    yaml_paths = {path.stem: path for path in sql_dir.glob("*.yml")}
    problems = [f"{sql_dir}/{name}.sql has no {name}.yml beside it" for name in sorted(sql_names - set(yaml_paths))]
    problems += [f"{sql_dir}/{name}.yml has no {name}.sql beside it" for name in sorted(set(yaml_paths) - sql_names)]
    problems += [
        f"{name} is in pipeline.schema.GOLD_TABLES but {sql_dir} has no {name}.sql"
        for name in sorted(gold_names - sql_names)
    ]
    problems += [
        f"{sql_dir}/{name}.sql builds a table that is not in pipeline.schema.GOLD_TABLES"
        for name in sorted(sql_names - gold_names)
    ]
    if problems:
        raise GoldCatalogError("; ".join(problems))
    models = {name: _load_model(path, sql_dir) for name, path in sorted(yaml_paths.items())}
    for model in models.values():
        compile_checks(model)  # every declared check is well-formed
    return models


def lint(models: Mapping[str, GoldModel]) -> list[str]:
    """What the SQL gets wrong that only shows later: reads of unknown tables, :since misuse.

    Not part of loading, so a build with a broken SQL file fails in the database, inside its
    transaction, as before; the unit tests and ``docs`` insist on an empty list.
    """
    problems = [
        f"sql/gold/{name}.sql reads {', '.join(names)}: neither a gold table, a table in pipeline.schema nor a CTE"
        for name, names in unknown_reads(models).items()
    ]
    for model in models.values():
        for dialect in DIALECTS:
            problem = _since_problem(model, dialect)
            if problem and problem not in problems:
                problems.append(problem)
    return problems


def _since_problem(model: GoldModel, dialect: str) -> str | None:
    """An incremental table's SQL must select only rows from :since on, and only such a table may.

    Otherwise an incremental build would insert rows it did not delete (duplicates), or a table
    rebuilt whole would keep only the rows from :since on (the rest lost).
    """
    uses_since = ":since" in _COMMENT.sub(" ", model.sql(dialect))
    path = model.sql_path(dialect).name
    if model.incremental and not uses_since:
        return f"{model.name}.yml declares incremental: {model.incremental}, but {path} does not use :since"
    if uses_since and not model.incremental:
        return f"{path} uses :since, but {model.name}.yml does not declare incremental: <time column>"
    return None


def _load_model(path: Path, sql_dir: Path) -> GoldModel:
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise GoldCatalogError(f"{where} is not valid YAML: {exc}") from exc
    body = _mapping(raw, where)
    _only_keys(body, {"name", "description", "grain", "incremental", "columns", "tests"}, where)
    name = _text(body.get("name"), f"{where}: name")
    if name != path.stem:
        raise GoldCatalogError(f"{where}: name is {name!r}, the file says {path.stem!r}")
    columns = []
    for index, item in enumerate(_list(body.get("columns"), f"{where}: columns")):
        entry = _mapping(item, f"{where}: columns[{index}]")
        _only_keys(entry, {"name", "description", "tests"}, f"{where}: columns[{index}]")
        column = _text(entry.get("name"), f"{where}: columns[{index}].name")
        columns.append(
            ColumnDoc(
                name=column,
                description=_text(entry.get("description"), f"{where}: column {column}: description"),
                tests=tuple(_list(entry.get("tests", []), f"{where}: column {column}: tests")),
            )
        )
    declared = [c.name for c in columns]
    in_schema = [c.name for c in schema.metadata.tables[name].columns]
    if declared != in_schema:
        missing = [c for c in in_schema if c not in declared]
        extra = [c for c in declared if c not in in_schema]
        raise GoldCatalogError(
            f"{where}: columns must be pipeline.schema's {name} columns in the same order"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; not in the table: {', '.join(extra)}" if extra else "")
            + ("; same names, other order" if not missing and not extra else "")
        )
    incremental = None if body.get("incremental") is None else _text(body["incremental"], f"{where}: incremental")
    if incremental is not None and incremental not in in_schema:
        raise GoldCatalogError(f"{where}: incremental column {incremental!r} is not a column of {name}")
    return GoldModel(
        name=name,
        description=_text(body.get("description"), f"{where}: description"),
        grain=_text(body.get("grain"), f"{where}: grain"),
        incremental=incremental,
        columns=tuple(columns),
        tests=tuple(_list(body.get("tests", []), f"{where}: tests")),
        sql_dir=sql_dir,
    )


def _mapping(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise GoldCatalogError(f"{where} must be a mapping")
    return value


def _list(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise GoldCatalogError(f"{where} must be a list")
    return value


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise GoldCatalogError(f"{where} must be a non-empty text")
    return value.strip()


def _only_keys(body: Mapping[str, object], allowed: set[str], where: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise GoldCatalogError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


# -- dependencies -----------------------------------------------------------------

_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_STRING = re.compile(r"'(?:[^']|'')*'")
#: Functions whose argument syntax uses FROM without naming a table: extract(epoch from x), ...
_FROM_IN_CALL = re.compile(r"\b(?:extract|substring|trim|overlay|position)\s*\([^()]*\)", re.IGNORECASE)
_CTE = re.compile(r"(?:\bwith|,)\s*([a-z_][a-z0-9_]*)\s+as\s*\(", re.IGNORECASE)
_NAME = r"[a-z_][a-z0-9_.]*(?:\s+(?:as\s+)?[a-z_][a-z0-9_]*)?"  # a table, maybe with an alias
#: FROM a table (or a comma-separated list of them: "from a, b as x"), or JOIN a table.
_READ = re.compile(rf"\b(?:from|join)\s+({_NAME}(?:\s*,\s*{_NAME})*)", re.IGNORECASE)


def tables_read(sql: str) -> frozenset[str]:
    """The tables a SELECT reads: the names after FROM and JOIN that are not its own CTEs."""
    bare = _FROM_IN_CALL.sub("", _STRING.sub("''", _COMMENT.sub(" ", sql)))
    ctes = {name.lower() for name in _CTE.findall(bare)}
    listed = [item.split()[0] for found in _READ.findall(bare) for item in found.split(",")]
    names = {name.lower().rsplit(".", 1)[-1] for name in listed}
    return frozenset(names - ctes)


def unknown_reads(models: Mapping[str, GoldModel]) -> dict[str, list[str]]:
    """Per gold table, the names its SQL reads that are neither a gold table nor in pipeline.schema."""
    known = set(schema.metadata.tables) | set(models)
    found = {name: sorted(model.reads() - known) for name, model in models.items()}
    return {name: names for name, names in found.items() if names}


def upstream(models: Mapping[str, GoldModel], dialect: str | None = None) -> dict[str, list[str]]:
    """Per gold table, the gold tables its SQL reads."""
    return {name: sorted(model.reads(dialect) & set(models) - {name}) for name, model in models.items()}


def build_order(models: Mapping[str, GoldModel], dialect: str | None = None) -> list[str]:
    """Gold tables in an order where each comes after every gold table its SQL reads.

    Otherwise tables keep pipeline.schema's order, so the order (and what a run prints) is the
    same on every run. A table reading itself is a cycle too (it would read its own half-rebuilt rows).
    """
    reads = upstream(models, dialect)
    for name, model in models.items():
        if name in model.reads(dialect):
            raise GoldCatalogError(f"gold table {name} reads itself: its SQL would see its own half-rebuilt rows")
    listed = [table.name for table in schema.GOLD_TABLES]
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            raise GoldCatalogError(f"gold tables read each other in a cycle: {' -> '.join(cycle)}")
        visiting.append(name)
        for parent in reads[name]:
            visit(parent)
        visiting.pop()
        order.append(name)

    for name in sorted(models, key=lambda n: (listed.index(n) if n in listed else len(listed), n)):
        visit(name)
    return order


# -- checks -----------------------------------------------------------------------


def compile_checks(model: GoldModel) -> list[Check]:
    """Every check the YAML declares, as queries counting failing rows (column checks first)."""
    checks = [
        _compile(model, test, column.name, f"{model.name}.yml: column {column.name}")
        for column in model.columns
        for test in column.tests
    ]
    checks += [_compile(model, test, None, f"{model.name}.yml: tests") for test in model.tests]
    labels = [check.name for check in checks]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise GoldCatalogError(f"{model.name}.yml declares the same check twice: {', '.join(duplicated)}")
    return checks


def _compile(model: GoldModel, test: object, column: str | None, where: str) -> Check:
    if isinstance(test, str):
        kind, args = test, None
    elif isinstance(test, dict) and len(test) == 1:
        ((kind, args),) = test.items()
    else:
        raise GoldCatalogError(f"{where}: a check is a name or a one-key mapping, got {test!r}")
    if kind not in CHECK_KINDS:
        raise GoldCatalogError(f"{where}: unknown check {kind!r} (known: {', '.join(CHECK_KINDS)})")
    table = model.name
    columns = set(model.table.columns.keys())
    if kind == "expression":
        condition = _text(args, f"{where}: expression")
        return Check(table, kind, condition, f"SELECT COUNT(*) FROM {table} WHERE NOT ({condition})")
    if kind == "unique" and column is None:
        keys = [_text(c, f"{where}: unique") for c in _list(args, f"{where}: unique (a list of columns)")]
        _known_columns(keys, columns, where)
        return _unique(table, keys, None)
    if column is None:
        raise GoldCatalogError(f"{where}: {kind} belongs under a column (table-level: unique, expression)")
    if kind == "not_null":
        _no_args(args, kind, where)
        return Check(table, kind, column, f"SELECT COUNT(*) FROM {table} WHERE {column} IS NULL", column)
    if kind == "unique":
        _no_args(args, kind, where)
        return _unique(table, [column], column)
    options = _mapping(args, f"{where}: {kind}")
    if kind == "accepted_values":
        _only_keys(options, {"values", "values_from"}, f"{where}: accepted_values")
        values = _accepted_values(options, f"{where}: accepted_values")
        return Check(
            table,
            kind,
            column,
            f"SELECT COUNT(*) FROM {table} WHERE {column} IS NOT NULL AND {column} NOT IN :values",
            column,
            f": {', '.join(values)}",
            {"values": values},
            ("values",),
        )
    if kind == "range":
        _only_keys(options, {"min", "max"}, f"{where}: range")
        bounds = {k: v for k, v in options.items() if v is not None}
        if not bounds or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bounds.values()):
            raise GoldCatalogError(f"{where}: range needs a number min and/or max, got {options!r}")
        outside = " OR ".join(f"{column} {'<' if k == 'min' else '>'} :{k}" for k in ("min", "max") if k in bounds)
        shown = f"{bounds.get('min', '')}..{bounds.get('max', '')}"
        return Check(table, kind, column, f"SELECT COUNT(*) FROM {table} WHERE {outside}", column, f": {shown}", bounds)
    # relationships
    _only_keys(options, {"to", "field"}, f"{where}: relationships")
    parent = _text(options.get("to"), f"{where}: relationships.to")
    key = _text(options.get("field"), f"{where}: relationships.field")
    if parent not in schema.metadata.tables or key not in schema.metadata.tables[parent].columns:
        raise GoldCatalogError(f"{where}: relationships to {parent}.{key}, which is not a column in pipeline.schema")
    return Check(
        table,
        kind,
        column,
        f"SELECT COUNT(*) FROM {table} AS child WHERE child.{column} IS NOT NULL AND NOT EXISTS "
        f"(SELECT 1 FROM {parent} AS parent WHERE parent.{key} = child.{column})",
        column,
        f" -> {parent}.{key}",
    )


def _unique(table: str, keys: Sequence[str], column: str | None) -> Check:
    """Rows sharing their key with another row (rows with a NULL in the key are not compared)."""
    listed = ", ".join(keys)
    present = " AND ".join(f"{k} IS NOT NULL" for k in keys)
    return Check(
        table,
        "unique",
        listed,
        f"SELECT COALESCE(SUM(n), 0) FROM (SELECT COUNT(*) AS n FROM {table} WHERE {present} "
        f"GROUP BY {listed} HAVING COUNT(*) > 1) AS duplicated",
        column,
    )


def _accepted_values(options: Mapping[str, object], where: str) -> list[str]:
    """``values: [...]`` in the YAML, or ``values_from: module.NAME`` naming the list's one owner."""
    if ("values" in options) == ("values_from" in options):
        raise GoldCatalogError(f"{where}: give either values or values_from")
    if "values" in options:
        values = _list(options["values"], f"{where}: values")
    else:
        reference = _text(options["values_from"], f"{where}: values_from")
        module_name, _, attribute = reference.rpartition(".")
        try:
            values = list(getattr(importlib.import_module(module_name), attribute))
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            raise GoldCatalogError(f"{where}: values_from {reference!r} does not name a list: {exc}") from exc
    if not values or not all(isinstance(v, str) for v in values):
        raise GoldCatalogError(f"{where}: accepted values must be a non-empty list of texts, got {values!r}")
    return [str(v) for v in values]


def _known_columns(keys: Sequence[str], columns: set[str], where: str) -> None:
    unknown = [k for k in keys if k not in columns]
    if unknown:
        raise GoldCatalogError(f"{where}: unknown column(s) {', '.join(unknown)}")


def _no_args(args: object, kind: str, where: str) -> None:
    if args is not None:
        raise GoldCatalogError(f"{where}: {kind} takes no arguments, got {args!r}")


def run_checks(conn: Connection, models: Mapping[str, GoldModel]) -> list[CheckResult]:
    """Run every declared check of every gold table, in build order; one query per check."""
    results = []
    for name in build_order(models, conn.dialect.name):
        for check in compile_checks(models[name]):
            failing = conn.execute(check.statement(), dict(check.params)).scalar_one()
            results.append(CheckResult(check, int(failing or 0)))
    return results


def failures(results: Sequence[CheckResult]) -> list[str]:
    """The messages of the checks that failed."""
    return [result.message() for result in results if not result.passed]


# -- docs -------------------------------------------------------------------------


def render_docs(models: Mapping[str, GoldModel]) -> str:
    """The docs page of gold tables (docs/tables.md), from the YAML and pipeline.schema."""
    order = build_order(models)
    ups = upstream(models)
    lines = [
        "# Gold tables",
        "",
        "<!-- Generated from sql/gold/*.yml and pipeline/schema.py by `make docs`",
        "     (python -m pipeline.gold_catalog docs > docs/tables.md). Edit those, not this page. -->",
        "",
        "The dashboard reads only these tables. They are rebuilt from silver in one transaction after every",
        "run, in this order (each after the gold tables its SQL reads): " + ", ".join(f"`{n}`" for n in order) + ".",
        "Each check counts the rows that break it; `python -m pipeline.gold_catalog check` runs them all.",
        "",
    ]
    for name in order:
        model = models[name]
        table = model.table
        checks = compile_checks(model)
        by_column: dict[str, list[str]] = {}
        for check in checks:
            if check.column is not None:
                by_column.setdefault(check.column, []).append(check.kind + check.detail)
        others = sorted(model.reads() - set(models))
        lines += [
            f"## {name}",
            "",
            _one_line(model.description),
            "",
            f"- **Grain:** {_one_line(model.grain)}",
            f"- **Built by:** `sql/gold/{name}.sql`; declared in `sql/gold/{name}.yml`",
            "- **Reads gold:** " + (", ".join(f"`{u}`" for u in ups[name]) or "none"),
            "- **Reads:** " + (", ".join(f"`{u}`" for u in others) or "none"),
            "- **Rebuilt:** "
            + (f"incrementally, from the run's oldest new `{model.incremental}` on" if model.incremental else "whole"),
            "",
            "| column | type | description | checks |",
            "|---|---|---|---|",
        ]
        for column in model.columns:
            definition = table.columns[column.name]
            kind = str(definition.type) + ("" if definition.nullable else ", not null")
            tests = "; ".join(by_column.get(column.name, []))
            lines.append(f"| `{column.name}` | {kind} | {_cell(column.description)} | {tests} |")
        table_checks = [check for check in checks if check.column is None]
        if table_checks:
            lines += ["", "Row checks over several columns:", ""]
            lines += [f"- `{check.name}`" for check in table_checks]
        lines.append("")
    return "\n".join(lines)


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _cell(value: str) -> str:
    return _one_line(value).replace("|", "\\|")


# -- command line -----------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``docs``: print the tables page; ``check``: run every declared check on DATABASE_URL."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["docs"]:
        models = load_catalog()
        problems = lint(models)
        if problems:
            print("\n".join(problems), file=sys.stderr)
            return 1
        sys.stdout.write(render_docs(models))
        return 0
    if args == ["check"]:
        from pipeline.config import Settings
        from pipeline.db import make_engine

        models = load_catalog()
        with make_engine(Settings.from_env().database_url).connect() as conn:
            results = run_checks(conn, models)
        for result in results:
            print(("ok    " if result.passed else "FAIL  ") + result.check.label)
        failed = failures(results)
        for message in failed:
            print(message, file=sys.stderr)
        return 1 if failed else 0
    print("usage: python -m pipeline.gold_catalog docs|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
