"""``manage.py runsim``: run a scenario from the terminal, against real peers or the built-in receivers."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.markup import escape
from rich.table import Table

from simulations.endpoints import CommitListen, EndpointPeer, EndpointSet, HL7Target, TlsSettings
from simulations.models import AE_TITLE_VALIDATOR, Run, Scenario
from simulations.receivers import BuiltinReceivers
from simulations.options import TRANSFER_SYNTAX_UIDS, RunOptions
from simulations.housekeeping import runs_housekeep
from simulations.services import missing_kinds, run_create, run_execute_async
from simulations.steps import MAX_INSTANCES_PER_SERIES, ScenarioError
from simulations.transport.dimse.common import DicomPeer
from simulations.transport.tls import TlsConfigError

DEFAULT_SCENARIO = "Full scheduled workflow"
# What Run.seed (a signed 64-bit BigIntegerField) holds; the API refuses the same range.
MAX_SEED = 2**63 - 1
MAX_CONCURRENCY = 256  # Scenario.concurrency's limit
# Exit status after Ctrl-C (128 + SIGINT, what shells report for an interrupted command); the run
# ended cancelled and the summary was printed.
EXIT_INTERRUPTED = 130


def _usage(message: str) -> CommandError:
    return CommandError(message, returncode=2)


def _finite(text: str) -> float:
    """argparse type: a finite number (``nan`` and ``inf`` parse as floats but mean nothing here)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _writable_dir(path: Path, flag: str, *, must_exist: bool) -> Path:
    """``path`` resolved, after proving a file can be created there (or in the folder that would hold
    it): a probe, not ``os.access``, which says yes to root even on a read-only file system."""
    path = path.expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise _usage(f"{flag} {path} is not a directory.")
    if must_exist and not path.exists():
        raise _usage(f"{flag} {path} does not exist.")
    probe_in = path
    while not probe_in.exists():
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise _usage(f"{flag} {path}: {probe_in} is not a directory.")
    try:
        fd, name = tempfile.mkstemp(dir=probe_in, prefix=".yeeter-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise _usage(f"{flag} {path} cannot be written ({exc.strerror or exc}).") from None
    return path


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


class Command(BaseCommand):
    help = ("Run a simulation: a scenario (or one exam chosen by id, CPT code or filters) for N patients. "
            "Without endpoint flags the built-in receivers (MLLP, Storage+commitment, MWL, MPPS SCPs) run on "
            "loopback and the whole chain crosses the network. Exit status: 0 when every patient passed, 1 when "
            "some failed or the run could not run, 2 for a bad flag or scenario, 130 after Ctrl-C (the run is "
            "cancelled and its summary printed).")

    def create_parser(self, prog_name: str, subcommand: str, **kwargs) -> CommandParser:
        """argparse's own errors in one line (no usage block), exit status 2 like every other bad flag."""
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def error(message: str):
            if parser.called_from_command_line:
                sys.stderr.write(f"runsim: {message} (see --help).\n")
                sys.exit(2)
            raise _usage(f"Error: {message}")

        parser.error = error  # type: ignore[method-assign]
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        sel = parser.add_argument_group("what to run (default: the 'Full scheduled workflow' scenario)")
        sel.add_argument("--scenario", help="scenario name (see admin or load_scenarios)")
        sel.add_argument("--exam", help="one catalog exam id for every patient, e.g. MR-KNEE-RIGHT-WO")
        sel.add_argument("--cpt", help="CPT code; among exams sharing it, chosen by weight")
        sel.add_argument("--modality", help="weighted random among exams of this modality")
        sel.add_argument("--body-part", help="weighted random among exams of this body part")
        sel.add_argument("--setting", choices=["outpatient", "inpatient", "emergency", "any"],
                         help="care setting filter for weighted random selection")
        parser.add_argument("--patients", type=int, help="number of patients (default: the scenario's)")
        parser.add_argument("--concurrency", type=int, help="patients in flight at once (default: the scenario's)")
        parser.add_argument("--seed", type=int, help="seed for reproducible exams, patients and pixels")
        parser.add_argument("--replay-ids", action="store_true",
                            help="also reproduce the seed's UIDs and accession numbers (resend an earlier run "
                                 "as it was); by default every run mints its own, so a PACS never merges two runs")
        parser.add_argument("--rate", type=_finite, metavar="PER_HOUR", help="Poisson arrivals at this mean rate")
        parser.add_argument("--speed", type=_finite, default=1.0,
                            help="divide arrival gaps and waits by this factor (e.g. 60: an hour in a minute)")
        net = parser.add_argument_group("endpoints (any kind not given uses the built-in receiver)")
        net.add_argument("--hl7", metavar="HOST:PORT", help="RIS / interface engine MLLP listener")
        net.add_argument("--pacs", metavar="AET@HOST:PORT", help="Storage SCP (also asked for storage commitment)")
        net.add_argument("--worklist", metavar="AET@HOST:PORT", help="Modality Worklist SCP to verify entries")
        net.add_argument("--worklist-dir", type=Path, metavar="DIR",
                         help="publish .wl files here (the folder dcmtk wlmscpfs or Orthanc serves)")
        net.add_argument("--mpps", metavar="AET@HOST:PORT", help="MPPS SCP")
        net.add_argument("--query", metavar="AET@HOST:PORT",
                         help="Study Root C-FIND SCP that VERIFY_PACS asks (default: the --pacs peer; the built-in "
                              "receivers' is <prefix>_QR)")
        net.add_argument("--qido", metavar="URL",
                         help="VERIFY_PACS searches this DICOMweb QIDO-RS base URL (e.g. "
                              "http://pacs:8042/dicom-web) instead of a C-FIND")
        net.add_argument("--commit-listen", metavar="[AET@][HOST:]PORT",
                         help="listen here for Storage Commitment reports the PACS sends on a new association "
                              "(register AET, default the calling AE title, at this host and port in the PACS; "
                              "HOST defaults to 0.0.0.0)")
        net.add_argument("--verify-pacs", action="store_true",
                         help="after storing, C-FIND the PACS (Study Root, study and series level) and compare what "
                              "it holds with what was sent (adds a VERIFY_PACS step)")
        net.add_argument("--calling-aet", default=settings.YEETER["AE_TITLE"], help="our AE title (default %(default)s)")
        net.add_argument("--tls", action="store_true", help="use TLS for the endpoints given by these flags")
        net.add_argument("--tls-ca", type=Path, metavar="FILE", help="CA certificate(s) to trust (PEM; default: "
                                                                     "the system store)")
        net.add_argument("--tls-no-verify", action="store_true",
                         help="encrypt without checking the peer's certificate (test beds only)")
        out = parser.add_argument_group("output")
        out.add_argument("--output", type=Path, help="run directory (default: YEETER_DATA_DIR/runs/<run id>)")
        out.add_argument("--no-send", action="store_true", help="generate and verify only; send nothing")
        out.add_argument("--validate", action="store_true", help="validate every HL7 message strictly (hl7apy)")
        out.add_argument("--transfer-syntax", choices=sorted(TRANSFER_SYNTAX_UIDS), default="explicit")
        out.add_argument("--max-instances", type=int, metavar="N", help="cap instances per series (quick runs)")
        out.add_argument("--json", action="store_true", help="print the run summary as JSON only")
        out.add_argument("--verbose", action="store_true", help="print every event")
        parser.add_argument("--in-process", action="store_true",
                            help="execute the patients in this process even when CELERY_BROKER_URL is set (by "
                                 "default a broker means one Celery task per patient, run by the workers)")

    # -- argument handling -------------------------------------------------------------------
    def _steps_and_scenario(self, opts: dict) -> tuple[list, Scenario | None]:
        selectors = {k: opts[k] for k in ("exam", "cpt", "modality", "body_part", "setting") if opts.get(k)}
        if opts.get("scenario"):
            scenario = Scenario.objects.filter(name=opts["scenario"]).first()
            if scenario is None:
                names = ", ".join(Scenario.objects.values_list("name", flat=True)) or "none loaded"
                raise _usage(f"No scenario named {opts['scenario']!r} (available: {names}).")
        else:
            scenario = Scenario.objects.filter(name=DEFAULT_SCENARIO).first()
            if scenario is None:
                raise _usage(f"The default scenario {DEFAULT_SCENARIO!r} is not loaded: run "
                             "`manage.py load_scenarios` first (scripts/run does).")
        steps = json_copy(scenario.steps)
        if opts.get("verify_pacs") or opts.get("qido"):
            steps = with_verify_pacs(steps, qido=opts.get("qido"))
        if selectors:
            if opts.get("exam") and opts.get("cpt"):
                raise _usage("Give either --exam or --cpt, not both.")
            if (opts.get("exam") or opts.get("cpt")) and any(k in selectors for k in ("modality", "body_part")):
                raise _usage("--modality/--body-part filter a random choice; they cannot be combined with "
                             "--exam or --cpt.")
            for step in steps:
                if isinstance(step, dict) and step.get("step_type") == "GENERATE_HL7":
                    for key in ("exam_id", "cpt_code", "modality", "body_part", "laterality", "setting"):
                        step.pop(key, None)
                    mapping = {"exam": "exam_id", "cpt": "cpt_code", "modality": "modality",
                               "body_part": "body_part", "setting": "setting"}
                    step.update({mapping[k]: v for k, v in selectors.items()})
        return steps, scenario

    def _endpoints(self, opts: dict, scenario: Scenario | None) -> tuple[EndpointSet, set[str]]:
        """External endpoints from flags (and the scenario's own), plus the kinds left for built-ins."""
        from simulations.endpoints import endpoint_set_from_rows

        rows = list(scenario.endpoints.all()) if scenario else []
        from simulations.models import Endpoint

        endpoints = endpoint_set_from_rows(Endpoint.objects.all(), defaults=rows)
        calling = opts["calling_aet"]
        if (opts.get("tls_ca") or opts.get("tls_no_verify")) and not opts.get("tls"):
            raise _usage("--tls-ca and --tls-no-verify only apply with --tls.")
        tls = TlsSettings(verify=not opts.get("tls_no_verify"), ca_file=str(opts.get("tls_ca") or "")) \
            if opts.get("tls") else None

        def dicom(text: str) -> EndpointPeer:
            parsed = DicomPeer.parse(text, calling_ae_title=calling)
            return EndpointPeer.build(parsed.host, parsed.port, parsed.ae_title, calling_ae_title=calling, tls=tls)

        try:
            if opts.get("hl7") is not None:
                endpoints = endpoints.with_kind("hl7", dataclasses.replace(HL7Target.parse(opts["hl7"]), tls=tls))
            if opts.get("pacs") is not None:
                peer = dicom(opts["pacs"])
                endpoints = endpoints.with_kind("storage", peer).with_kind("commitment", peer)
            if opts.get("worklist") is not None:
                endpoints = endpoints.with_kind("mwl", dicom(opts["worklist"]))
            if opts.get("mpps") is not None:
                endpoints = endpoints.with_kind("mpps", dicom(opts["mpps"]))
            if opts.get("query"):
                endpoints = endpoints.with_kind("query", dicom(opts["query"]))
        except TlsConfigError as exc:
            raise _usage(f"TLS: {exc.message}") from None
        except ValueError as exc:
            raise _usage(f"Bad endpoint: {exc}.") from None
        if opts.get("commit_listen"):
            try:
                listen = CommitListen.parse(opts["commit_listen"], ae_title=calling)
            except ValueError as exc:
                raise _usage(f"Bad --commit-listen: {exc}.") from None
            endpoints = dataclasses.replace(endpoints, commit_listen=listen)
        if opts.get("worklist_dir") is not None:
            folder = _writable_dir(opts["worklist_dir"], "--worklist-dir", must_exist=True)
            endpoints = endpoints.with_kind("worklist_folder", folder)
        return endpoints, set(missing_kinds(endpoints))

    def _check_flags(self, opts: dict) -> None:
        """Every flag checked before anything is created; each mistake is one sentence and exit status 2."""
        for name, low, high in (("patients", 1, None), ("concurrency", 1, MAX_CONCURRENCY),
                                ("max_instances", 1, MAX_INSTANCES_PER_SERIES), ("seed", 0, MAX_SEED)):
            value = opts.get(name)
            if value is None:
                continue
            flag = f"--{name.replace('_', '-')}"
            if value < low or (high is not None and value > high):
                raise _usage(f"{flag} must be at least {low}, got {value}." if high is None
                             else f"{flag} must be from {low} to {high}, got {value}.")
        if opts["speed"] <= 0:
            raise _usage("--speed must be greater than 0.")
        if opts.get("rate") is not None and opts["rate"] <= 0:
            raise _usage("--rate must be greater than 0 patients per hour.")
        try:
            AE_TITLE_VALIDATOR(opts["calling_aet"])
        except Exception:  # noqa: BLE001 - django.core.exceptions.ValidationError; its message is ours
            raise _usage(f"--calling-aet must be 1 to 16 printable ASCII characters, got {opts['calling_aet']!r}.") \
                from None
        if opts.get("output") is not None:
            opts["output"] = _writable_dir(opts["output"], "--output", must_exist=False)
        else:
            _writable_dir(Path(settings.DATA_DIR) / "runs", "YEETER_DATA_DIR/runs", must_exist=False)

    def handle(self, *args, **opts) -> None:
        try:
            self._handle(opts)
        except KeyboardInterrupt:  # before the run's loop took over Ctrl-C
            raise CommandError("Interrupted.", returncode=EXIT_INTERRUPTED) from None
        except DatabaseError as exc:
            raise CommandError(f"The database is not ready ({exc}): run `manage.py migrate` first, then "
                               "`load_catalog` and `load_scenarios`.") from None

    def _handle(self, opts: dict) -> None:
        self._check_flags(opts)
        # A Yeeter process starting: end the runs whose process died before taking a new one.
        runs_housekeep()
        steps, scenario = self._steps_and_scenario(opts)
        send = not opts["no_send"]
        endpoints, missing = self._endpoints(opts, scenario)  # parsed even with --no-send: a typo is a typo
        if not send:
            endpoints, missing = EndpointSet(), set()
        patients = opts.get("patients") or (scenario.default_patients if scenario else 1)
        concurrency = opts.get("concurrency") or (scenario.concurrency if scenario else 4)
        arrival, rate = (scenario.arrival, scenario.rate_per_hour) if scenario else ("all_at_once", None)
        if opts.get("rate"):
            arrival, rate = "poisson", opts["rate"]

        self._run(opts, steps, scenario, endpoints, patients, concurrency, arrival, rate, tuple(sorted(missing)))

    def _run(self, opts, steps, scenario, endpoints, patients, concurrency, arrival, rate, builtin_kinds) -> None:
        self._in_process = opts["in_process"]
        options = RunOptions(
            output_dir=opts.get("output"), send=not opts["no_send"], validate_hl7=opts["validate"],
            transfer_syntax=opts["transfer_syntax"], max_instances_per_series=opts.get("max_instances"),
            speed=opts["speed"], pixel_workers=settings.YEETER["PIXEL_WORKERS"],
            sending_application=settings.YEETER["HL7_SENDING_APPLICATION"],
            sending_facility=settings.YEETER["HL7_SENDING_FACILITY"], builtin_kinds=builtin_kinds,
            replay_ids=opts["replay_ids"])
        try:
            run = run_create(steps_json=steps, patients=patients, concurrency=concurrency, endpoints=endpoints,
                             options=options, scenario=scenario, seed=opts.get("seed"), arrival=arrival,
                             rate_per_hour=rate)
        except ScenarioError as exc:
            raise _usage("The scenario cannot run:\n  - " + "\n  - ".join(exc.problems)) from None
        quiet = opts["json"]
        stream = getattr(self.stdout, "_out", self.stdout)
        tty = self.stdout.isatty()
        console = Console(file=stream, force_terminal=tty, highlight=False, width=None if tty else 120)
        if not quiet:
            stream.write(f"Run {run.id}  scenario {run.scenario_name or 'ad hoc'}  {patients} patient(s)  "
                         f"seed {run.seed}\n")
            for kind, target in endpoints.describe().items():
                stream.write(f"  {kind:<16} -> {target}\n")
            commits = any(isinstance(st, dict) and st.get("step_type") == "STORAGE_COMMIT" for st in steps)
            if commits and endpoints.get("commitment") is not None and endpoints.commit_listen is None:
                stream.write("  note: storage commitment reports are accepted on the requesting association only; "
                             "most PACS report on a new one: pass --commit-listen [AET@][HOST:]PORT and register "
                             "it in the PACS\n")
            stream.flush()
        display = RunDisplay(patients, stream=stream, tty=tty, verbose=opts["verbose"], quiet=quiet, console=console)
        started: list[BuiltinReceivers] = []

        def on_receivers(receivers: BuiltinReceivers) -> None:
            started.append(receivers)
            if not quiet:
                display.say("Built-in receivers on loopback:")
                for line in receivers.describe():
                    display.say(f"  {line}")

        interrupts: list[int] = []  # the signals received, in order
        loop = asyncio.new_event_loop()
        try:
            run = loop.run_until_complete(self._execute(run, display, on_receivers, interrupts))
        except (asyncio.CancelledError, KeyboardInterrupt):
            # Ctrl-C twice: the run was ended (cancelled) by run_execute_async; threads blocked in
            # a network call would hold the exit for their timeouts, so leave at once.
            display.finish()
            run.refresh_from_db()
            self.stderr.write(f"Aborted: run {run.id} ended {run.status}; steps in flight were abandoned.")
            self.stderr.flush()
            stream.flush()
            os._exit(128 + interrupts[-1] if interrupts else EXIT_INTERRUPTED)
        finally:
            display.finish()
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        run.refresh_from_db()
        if run.status == Run.Status.ERROR:
            raise CommandError(f"Run {run.id} could not run: {run.error}", returncode=1)
        summary = self._summary(run, started[0] if started else None)
        if quiet:
            stream.write(json.dumps(summary, indent=2) + "\n")
        else:
            self._table(summary, console)
        if run.status == Run.Status.CANCELLED and interrupts:
            raise CommandError(f"Run cancelled after Ctrl-C: {summary['passed']} passed, {summary['failed']} failed, "
                               f"{summary['cancelled']} cancelled.", returncode=EXIT_INTERRUPTED)
        if run.status != Run.Status.SUCCEEDED:
            raise CommandError(f"Run {run.status}: {summary['failed']} patient(s) failed, "
                               f"{summary['cancelled']} cancelled.", returncode=1)

    async def _execute(self, run: Run, display: RunDisplay, on_receivers, interrupts: list[int]) -> Run:
        """The run on this loop. First Ctrl-C: stop starting steps, let those in flight finish, end the
        run cancelled. Second: cancel everything now (the run still ends cancelled)."""
        cancel = asyncio.Event()
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()

        def on_interrupt() -> None:
            interrupts.append(signal.SIGINT)
            if len(interrupts) > 1:
                main.cancel()
                return
            display.say("Stopping: finishing steps in flight (Ctrl-C again to abort).", err=self.stderr)
            cancel.set()

        def on_terminate() -> None:
            # SIGTERM (systemd, docker stop, kill): the process is wanted gone soon; abort, but end
            # the run (cancelled) on the way out rather than leave it for the reaper.
            interrupts.append(signal.SIGTERM)
            main.cancel()

        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        loop.add_signal_handler(signal.SIGTERM, on_terminate)
        try:
            return await run_execute_async(run, listeners=[display], cancel=cancel, on_receivers=on_receivers,
                                           in_process=self._in_process)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
            # Until the process exits, a late Ctrl-C only repeats that we are stopping.
            signal.signal(signal.SIGINT, lambda *_: None)

    @staticmethod
    def _summary(run: Run, receivers: BuiltinReceivers | None) -> dict[str, Any]:
        summary = {"run_id": str(run.id), "status": run.status, "scenario": run.scenario_name, "seed": run.seed,
                   "output_dir": run.output_dir, **run.summary}
        if receivers is not None:
            received = {"hl7": ("hl7_messages", lambda: receivers.mllp.received_count),
                        "storage": ("dicom_instances", lambda: len(receivers.storage.stored())),
                        "mpps": ("mpps_instances", lambda: len(receivers.mpps.instances))}
            summary["received"] = {name: count() for kind, (name, count) in received.items()
                                   if kind in receivers.kinds}
        summary["patient_rows"] = [
            {"number": p.number, "status": p.status, "exam": p.exam_code, "modality": p.modality,
             "accession": p.accession_number, "instances": p.instances,
             "verified": bool(p.verification.get("ok")), "error": p.error, "worker": p.worker}
            for p in run.patients.order_by("index")
        ]
        summary["executor"] = run.executor
        return summary

    @staticmethod
    def _table(s: dict[str, Any], console: Console) -> None:
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


def with_verify_pacs(steps: list, *, qido: str | None = None) -> list:
    """``steps`` with a VERIFY_PACS step after the study was stored (and committed, when it is); ``qido``
    makes every VERIFY_PACS step search that DICOMweb base URL."""
    types = [s.get("step_type") if isinstance(s, dict) else None for s in steps]
    if "VERIFY_PACS" in types:
        for step, kind in zip(steps, types):
            if kind == "VERIFY_PACS" and qido:
                step["qido"] = qido
        return steps
    if "SEND_DICOM" not in types:
        raise _usage("--verify-pacs checks the study stored by a SEND_DICOM step; this scenario has none.")
    anchor = max(i for i, t in enumerate(types) if t in ("SEND_DICOM", "STORAGE_COMMIT"))
    added = {"step_type": "VERIFY_PACS", **({"qido": qido} if qido else {})}
    return [*steps[:anchor + 1], added, *steps[anchor + 1:]]


def json_copy(value):
    return json.loads(json.dumps(value))
