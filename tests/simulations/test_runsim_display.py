"""runsim's display: a live bar on a terminal, plain event lines otherwise."""

from __future__ import annotations

import io

from rich.console import Console

from simulations.display import RunDisplay


def _event(type_: str, message: str, *, level: str = "info", patient: int | None = 1, **payload) -> dict:
    return {"type": type_, "message": message, "level": level, "patient": patient, "payload": payload}


def test_a_terminal_gets_one_bar_redrawn_in_place_and_errors_above_it():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    progress = RunDisplay(2, stream=out, tty=True, verbose=False, quiet=False, console=console)
    progress(_event("dicom.generated", "Generated 10", instances=10, bytes=5_000_000))
    progress(_event("patient.passed", "Patient 1 passed"))
    progress(_event("patient.failed", "Patient 2 failed: step 3 (SEND_HL7): AR", level="error", patient=2))
    progress.finish()
    text = out.getvalue()
    assert "\r" in text or "\x1b[" in text  # redrawn in place (cursor moves), not appended line by line
    assert text.endswith("\n\x1b[?25h")  # finish() leaves the cursor, shown again, on a fresh line
    assert "  ! [patient 2] Patient 2 failed: step 3 (SEND_HL7): AR" in text
    last = text.rsplit("\r", 1)[-1]
    assert "2/2" in last and "1 ok 1 failed  10 instances  5.0 MB" in last


def test_a_pipe_gets_plain_lines_for_the_events_that_matter():
    out = io.StringIO()
    progress = RunDisplay(1, stream=out, tty=False, verbose=False, quiet=False)
    progress(_event("exam.bound", "Bound exam MR-KNEE-RIGHT-WO"))
    progress(_event("hl7.sent", "ORM^O01 sent: ACK AA"))
    progress(_event("patient.passed", "Patient 1 passed"))
    progress(_event("run.finished", "Run succeeded", patient=None))
    assert out.getvalue().splitlines() == ["[patient 1] Bound exam MR-KNEE-RIGHT-WO", "[patient 1] Patient 1 passed",
                                           "Run succeeded"]
    assert "\033" not in out.getvalue()


def test_verbose_prints_every_event_and_quiet_prints_none():
    loud, silent = io.StringIO(), io.StringIO()
    for stream, verbose, quiet in ((loud, True, False), (silent, False, True)):
        progress = RunDisplay(1, stream=stream, tty=False, verbose=verbose, quiet=quiet)
        progress(_event("hl7.sent", "ORM^O01 sent: ACK AA"))
        progress(_event("patient.passed", "Patient 1 passed"))
    assert loud.getvalue().splitlines() == ["[patient 1] ORM^O01 sent: ACK AA", "[patient 1] Patient 1 passed"]
    assert silent.getvalue() == ""
