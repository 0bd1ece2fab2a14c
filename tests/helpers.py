"""Small helpers shared by the tests that drive real processes."""

from __future__ import annotations

import threading
import time


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s")


class OutputLines:
    """Collect a child process's text output line by line on a thread, so a test can wait for
    what the process *said* (its log lines) rather than for a side effect that precedes them."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, needle: str, timeout: float) -> None:
        wait_for(lambda: needle in self.text(), timeout, what=f"output line {needle!r}")

    def text(self) -> str:
        return "".join(self.lines)

    def close(self, timeout: float = 15) -> str:
        self._thread.join(timeout)
        return self.text()


def refuse_inserts(conn, table: str, message: str) -> None:
    """Make ``table`` refuse every insert with ``message`` (a trigger), on SQLite and PostgreSQL.

    Gold tables whose columns differ from the code are re-created on start, so a renamed column no
    longer sabotages a gold build; a trigger does."""
    from sqlalchemy import text

    if conn.dialect.name == "sqlite":
        conn.execute(
            text(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, '{message}'); END")
        )
    else:
        conn.execute(
            text(
                f"CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$"
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse_{table}()"
            )
        )


def allow_inserts(conn, table: str) -> None:
    from sqlalchemy import text

    conn.execute(text(f"DROP TRIGGER refuse_{table}" + ("" if conn.dialect.name == "sqlite" else f" ON {table}")))
