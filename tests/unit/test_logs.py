"""pipeline.logs: the text format people read, JSON lines for a collector, and --quiet / --verbose."""

from __future__ import annotations

import io
import json

import pytest

from pipeline import logs
from pipeline.cli import main


@pytest.fixture(autouse=True)
def unconfigured():
    yield
    logs.reset()


def emit_everything() -> None:
    logs.progress("fetch", "markets page 1: 250 coins so far", run_id="r-1")
    logs.progress(None, "[1/2] bitcoin: 92 points")
    logs.outcome("run r-1 succeeded: 250 silver rows")
    logs.get_logger("pipeline.flow").info("a detail")
    logs.get_logger("pipeline.runs").warning("took over the lock from dead run %s", "r-0")


def test_text_puts_progress_on_stdout_bare_and_diagnostics_on_stderr(capsys):
    logs.configure("info")
    emit_everything()
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "[ fetch] markets page 1: 250 coins so far",
        "[1/2] bitcoin: 92 points",
        "run r-1 succeeded: 250 silver rows",
    ]
    (line,) = err.splitlines()  # the detail is hidden by default, the warning is not
    assert line.endswith(" WARNING pipeline.runs: took over the lock from dead run r-0")


def test_quiet_keeps_only_warnings_and_verbose_shows_the_details(capsys):
    logs.configure("warning")
    emit_everything()
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "took over the lock" in err

    logs.configure("debug")
    emit_everything()
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 3
    assert "INFO pipeline.flow: a detail" in err and "WARNING pipeline.runs" in err


def test_json_lines_are_one_object_each_with_run_and_stage(capsys):
    logs.configure("info", json_lines=True)
    emit_everything()
    out, err = capsys.readouterr()
    assert err == ""
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(e["level"], e["logger"], e["message"]) for e in lines] == [
        ("INFO", "pipeline.progress", "markets page 1: 250 coins so far"),
        ("INFO", "pipeline.progress", "[1/2] bitcoin: 92 points"),
        ("INFO", "pipeline.progress", "run r-1 succeeded: 250 silver rows"),
        ("WARNING", "pipeline.runs", "took over the lock from dead run r-0"),
    ]
    assert lines[0]["run_id"] == "r-1" and lines[0]["stage"] == "fetch"
    assert "stage" not in lines[1] and "run_id" not in lines[3]
    assert all(e["time"].endswith("+00:00") for e in lines)


def test_records_inside_a_run_carry_its_id_and_exceptions_stay_on_one_line():
    stream = io.StringIO()
    logs.configure("info", json_lines=True, stream=stream)
    with logs.bound_run("r-2"):
        logs.get_logger("pipeline.flow").warning("inside")
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            logs.get_logger("pipeline.cli").exception("failed")
    logs.get_logger("pipeline.flow").warning("outside")
    inside, failed, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["run_id"] == "r-2" and failed["run_id"] == "r-2" and "run_id" not in outside
    assert "ValueError: bad" in failed["exception"]


def test_reset_removes_what_configure_added(capsys):
    logs.configure("info")
    logs.reset()
    logs.progress("fetch", "nobody listens")
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="verbosity"):
        logs.configure("loud")


def test_the_command_line_writes_json_lines_with_log_format_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'warehouse.db'}")
    assert main(["run", "--source", "sample", "--log-format", "json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = [json.loads(line) for line in out.splitlines()]
    assert {"fetch", "bronze", "silver", "gold"} <= {e.get("stage") for e in lines}
    run_ids = {e.get("run_id") for e in lines}
    assert len(run_ids) == 1 and None not in run_ids  # every line names the run
    assert "succeeded" in lines[-1]["message"]


def test_the_setting_chooses_json_and_quiet_hides_progress(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'warehouse.db'}")
    monkeypatch.setenv("PIPELINE_LOG_FORMAT", "json")
    assert main(["schema", "--apply"]) == 0
    assert json.loads(capsys.readouterr().out)["message"].startswith("schema is at version ")
    assert main(["--quiet", "run", "--source", "sample"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["run", "--source", "sample", "--log-format", "text"]) in (0, 6)
    assert capsys.readouterr().out.startswith("[ fetch] ")
