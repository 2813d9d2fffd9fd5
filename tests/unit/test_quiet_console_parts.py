"""The parts of a quiet console (issue 12): library log records go to the run's log and only a warning that is
not routine reaches the console, in gpo-ray's words; `--run-dir`'s help states the real default."""

from __future__ import annotations

import json
import logging
import re

import pytest

from gpo_ray.cli import main
from gpo_ray.logs import configure_logging, library_logs
from gpo_ray.runtime.run_dir import default_run_dir


@pytest.fixture
def detached_logger():
    """A library logger that does not propagate and has no handler, as ray.init leaves the "ray" logger."""
    logger = logging.getLogger("somelib")
    logger.propagate, logger.level = False, logging.INFO
    yield logger
    logger.propagate, logger.level = True, logging.NOTSET


def test_library_records_land_in_the_run_log_and_only_unusual_warnings_on_the_console(tmp_path, capsys,
                                                                                      detached_logger):
    log_file = tmp_path / "logs" / "driver.jsonl"
    configure_logging(mode="console", log_file=log_file)
    with library_logs(console=True, routine=("Routine notice",), detached=("somelib",)):
        assert detached_logger.propagate
        logging.getLogger("somelib.part").warning("Routine notice: nothing to worry about")
        logging.getLogger("somelib.part").info("started %d things", 3)
        logging.getLogger("somelib").warning("disk is nearly full\nsecond line")
    assert not detached_logger.propagate, "the logger is left as the library had it"
    logging.getLogger("somelib").warning("after the block")  # no longer ours (logging's last resort prints it)

    err = capsys.readouterr().err
    shown = [line for line in err.splitlines() if line.startswith("gpo-ray:")]
    assert shown == ["gpo-ray: somelib warns: disk is nearly full (more in the run's logs/driver.jsonl)"]
    assert "Routine notice" not in err and "started 3 things" not in err
    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(e["event"], e["library"], e["level"], e["message"]) for e in events] == [
        ("library_log", "somelib", "warning", "Routine notice: nothing to worry about"),
        ("library_log", "somelib", "info", "started 3 things"),
        ("library_log", "somelib", "warning", "disk is nearly full\nsecond line"),
    ]


def test_without_console_library_warnings_go_to_the_run_log_only(tmp_path, capsys, detached_logger):
    log_file = tmp_path / "driver.jsonl"
    configure_logging(mode="quiet", log_file=log_file)
    with library_logs(console=False, detached=("somelib",)):
        logging.getLogger("somelib").error("something Ray-ish went wrong")
    assert capsys.readouterr().err == ""
    (event,) = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert event["level"] == "error" and event["message"] == "something Ray-ish went wrong"


def test_run_dir_help_names_the_real_default(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["optimize", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "runs/latest" not in text
    described = re.search(r"--run-dir RUN_DIR .*?\(default: runs/<time>-<id>, e\.g\. (runs/[0-9a-f-]+)\)", text)
    assert described, text
    pattern = r"runs/\d{8}-\d{6}-[0-9a-f]{4}"
    assert re.fullmatch(pattern, described.group(1)), "the example has the shape of a real default"
    assert re.fullmatch(pattern, default_run_dir().as_posix()), "and so has the real default"
