"""``manage.py runsim``: run a scenario from the terminal, against real peers or the built-in receivers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from rich.console import Console

from simulations.display import RunDisplay, print_summary
from simulations.endpoints import EndpointSet
from simulations.housekeeping import runs_housekeep
from simulations.models import Run
from simulations.options import TRANSFER_SYNTAX_UIDS, RunOptions
from simulations.receivers import BuiltinReceivers
from simulations.runsim_flags import (
    check_flags,
    endpoints_from_flags,
    finite_number,
    steps_and_scenario,
    usage_error,
)
from simulations.services import run_create, run_execute_async
from simulations.steps import ScenarioError

# Exit status after Ctrl-C (128 + SIGINT, what shells report for an interrupted command); the run
# ended cancelled and the summary was printed.
EXIT_INTERRUPTED = 130


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
            raise usage_error(f"Error: {message}")

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
        parser.add_argument("--rate", type=finite_number, metavar="PER_HOUR", help="Poisson arrivals at this mean rate")
        parser.add_argument("--speed", type=finite_number, default=1.0,
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

    def handle(self, *args, **opts) -> None:
        try:
            self._handle(opts)
        except KeyboardInterrupt:  # before the run's loop took over Ctrl-C
            raise CommandError("Interrupted.", returncode=EXIT_INTERRUPTED) from None
        except DatabaseError as exc:
            raise CommandError(f"The database is not ready ({exc}): run `manage.py migrate` first, then "
                               "`load_catalog` and `load_scenarios`.") from None

    def _handle(self, opts: dict) -> None:
        check_flags(opts)
        # A Yeeter process starting: end the runs whose process died before taking a new one.
        runs_housekeep()
        steps, scenario = steps_and_scenario(opts)
        send = not opts["no_send"]
        endpoints, missing = endpoints_from_flags(opts, scenario)  # parsed even with --no-send: a typo is a typo
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
            raise usage_error("The scenario cannot run:\n  - " + "\n  - ".join(exc.problems)) from None
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
            print_summary(summary, console)
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
