"""How a run looks in a terminal (``manage.py runsim``): live progress while it goes, tables when it ends."""

from __future__ import annotations

from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


class RunDisplay:
    """What the run looks like while it goes: a rich progress bar redrawn in place on a terminal
    (errors printed above it), plain event lines otherwise (logs, CI, pipes), nothing with --json."""

    _PLAIN = {"run.started", "exam.bound", "patient.passed", "patient.failed", "run.finished", "run.cancelled",
              "run.error", "verification.mismatch"}

    def __init__(self, total: int, *, stream: TextIO, tty: bool, verbose: bool, quiet: bool,
                 console: Console | None = None) -> None:
        self.total = total
        self.stream = stream
        self.tty = tty
        self.verbose = verbose
        self.quiet = quiet
        self.passed = self.failed = self.instances = 0
        self.mb = 0.0
        self.console = console or Console(file=stream, force_terminal=tty, highlight=False)
        self._bar: Progress | None = None
        self._task = None
        if tty and not quiet:
            self._bar = Progress(TextColumn("[bold]patients"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=self.console,
                                 transient=False, refresh_per_second=8)
            self._task = self._bar.add_task("run", total=total, detail=self._detail())
            self._bar.start()

    def _detail(self) -> str:
        return f"{self.passed} ok {self.failed} failed  {self.instances} instances  {self.mb:.1f} MB"

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "patient.passed":
            self.passed += 1
        elif kind == "patient.failed":
            self.failed += 1
        elif kind == "dicom.generated":
            self.instances += event["payload"].get("instances", 0)
            self.mb += event["payload"].get("bytes", 0) / 1e6
        if self.quiet:
            return
        who = f"[patient {event['patient']}] " if event.get("patient") is not None else ""
        if self._bar is not None:
            if kind in {"patient.failed", "verification.mismatch", "run.error"} or event["level"] == "error":
                self._bar.console.print(f"  ! {who}{event['message']}", markup=False)
            self._bar.update(self._task, completed=self.passed + self.failed, detail=self._detail())
        elif self.verbose or kind in self._PLAIN or event["level"] != "info":
            self.stream.write(f"{who}{event['message']}\n")
            self.stream.flush()

    def say(self, line: str, *, err: Any = None) -> None:
        """A line of our own: above the bar while it runs, else to ``err`` (a stream) or the output."""
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        elif err is not None:
            err.write(line)
            err.flush()
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def print_summary(s: dict[str, Any], console: Console) -> None:
    """The run's summary (as ``runsim --json`` prints it) as two tables: one row per patient, then the totals."""
    patients = Table(box=None, pad_edge=False, header_style="bold")
    for name, justify in (("#", "right"), ("status", "left"), ("exam", "left"), ("mod", "left"),
                          ("accession", "left"), ("inst", "right"), ("verified", "left")):
        patients.add_column(name, justify=justify, no_wrap=name != "exam")
    colour = {"passed": "green", "failed": "red", "cancelled": "yellow"}
    for p in s["patient_rows"]:
        patients.add_row(str(p["number"]), f"[{colour.get(p['status'], 'white')}]{p['status']}[/]", p["exam"],
                         p["modality"], p["accession"], str(p["instances"]), "yes" if p["verified"] else "no")
        if p["error"]:
            patients.add_row("", "", f"[red]{escape(p['error'])}[/]", "", "", "", "")
    console.print()
    console.print(patients)
    get = s.get
    acks = ", ".join(f"{k} {v}" for k, v in sorted(get("acks", {}).items())) or "none"
    totals = Table.grid(padding=(0, 2))
    totals.add_column(style="bold")
    totals.add_column()
    rows = [
        ("Patients", f"{get('passed', 0)} ok, {get('failed', 0)} failed, {get('cancelled', 0)} cancelled of "
                     f"{get('patients', len(s['patient_rows']))}"),
        ("HL7 messages", f"{get('hl7_messages', 0)} sent; ACKs: {acks}; {get('reports', 0)} reports"),
        ("Worklist", f"{get('worklist_published', 0)} published, {get('worklist_found', 0)} found by C-FIND"),
        ("MPPS", f"{get('mpps', 0)} messages"),
        ("Instances", f"{get('instances_generated', 0)} generated, {get('instances_stored', 0)} stored, "
                      f"{get('instances_failed', 0)} failed, {get('committed', 0)} committed; "
                      f"{get('megabytes', 0)} MB"),
        ("Throughput", f"{get('patients_per_minute', 0)} patients/min, {get('instances_per_second', 0)} "
                       f"instances/s, {get('megabytes_per_second', 0)} MB/s in {get('duration_s', 0)} s"),
        ("Verification", f"{get('verified', 0)}/{get('patients', 0)} patients consistent"),
        ("Files", s["output_dir"]),
    ]
    for label, value in rows:
        totals.add_row(label, escape(str(value)))
    console.print()
    console.print(totals)
    style = "green" if s["status"] == "succeeded" else "red"
    console.print(f"[bold {style}]Run {s['status']}.[/]")
