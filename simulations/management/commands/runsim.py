"""``manage.py runsim``: run a scenario from the terminal, against real peers or the built-in receivers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from simulations.endpoints import CommitListen, EndpointPeer, EndpointSet, HL7Target, TlsSettings
from simulations.models import Run, Scenario
from simulations.receivers import BuiltinReceivers
from simulations.runner import TRANSFER_SYNTAX_UIDS, RunOptions
from simulations.services import missing_kinds, run_create, run_execute_async
from simulations.steps import ScenarioError
from simulations.transport.dimse.common import DicomPeer
from simulations.transport.tls import TlsConfigError

DEFAULT_SCENARIO = "Full scheduled workflow"


def _usage(message: str) -> CommandError:
    return CommandError(message, returncode=2)


class Progress:
    """A live progress bar on a terminal; plain event lines otherwise (logs, CI, pipes)."""

    def __init__(self, total: int, *, stream, tty: bool, verbose: bool, quiet: bool) -> None:
        self.total = total
        self.stream = stream
        self.tty = tty
        self.verbose = verbose
        self.quiet = quiet
        self.done = self.passed = self.failed = 0
        self.instances = 0
        self.mb = 0.0
        self.started = time.perf_counter()

    _PLAIN = {"run.started", "exam.bound", "patient.passed", "patient.failed", "run.finished", "run.cancelled",
              "verification.mismatch"}

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "patient.passed":
            self.done += 1
            self.passed += 1
        elif kind == "patient.failed":
            self.done += 1
            self.failed += 1
        elif kind == "dicom.generated":
            self.instances += event["payload"].get("instances", 0)
            self.mb += event["payload"].get("bytes", 0) / 1e6
        if self.quiet:
            return
        if self.tty:
            if kind in {"patient.failed", "verification.mismatch"} or event["level"] == "error":
                self._clear()
                self.stream.write(f"  ! {event['message']}\n")
            self._bar()
        elif self.verbose or kind in self._PLAIN or event["level"] != "info":
            who = f"[patient {event['patient'] + 1}] " if event.get("patient") is not None else ""
            self.stream.write(f"{who}{event['message']}\n")
            self.stream.flush()

    def _clear(self) -> None:
        self.stream.write("\r\033[K")

    def _bar(self) -> None:
        width = 30
        filled = int(width * self.done / self.total) if self.total else width
        elapsed = time.perf_counter() - self.started
        self._clear()
        self.stream.write(f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} patients  "
                          f"{self.passed} ok {self.failed} failed  {self.instances} instances  {self.mb:.1f} MB  "
                          f"{elapsed:.0f}s")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\n")


class Command(BaseCommand):
    help = ("Run a simulation: a scenario (or one exam chosen by id, CPT code or filters) for N patients. "
            "Without endpoint flags the built-in receivers (MLLP, Storage+commitment, MWL, MPPS SCPs) run on "
            "loopback and the whole chain crosses the network. Exit code 0 only when every patient passed.")

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
        parser.add_argument("--seed", type=int, help="seed for reproducible exams, identities and pixels")
        parser.add_argument("--rate", type=float, metavar="PER_HOUR", help="Poisson arrivals at this mean rate")
        parser.add_argument("--speed", type=float, default=1.0,
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
            if opts.get("hl7"):
                endpoints = endpoints.with_kind("hl7", dataclasses.replace(HL7Target.parse(opts["hl7"]), tls=tls))
            if opts.get("pacs"):
                peer = dicom(opts["pacs"])
                endpoints = endpoints.with_kind("storage", peer).with_kind("commitment", peer)
            if opts.get("worklist"):
                endpoints = endpoints.with_kind("mwl", dicom(opts["worklist"]))
            if opts.get("mpps"):
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
        if opts.get("worklist_dir"):
            folder = opts["worklist_dir"].expanduser().resolve()
            if not folder.is_dir():
                raise _usage(f"--worklist-dir {folder} is not a directory.")
            endpoints = endpoints.with_kind("worklist_folder", folder)
        return endpoints, set(missing_kinds(endpoints))

    def handle(self, *args, **opts) -> None:
        for name, low in (("patients", 1), ("concurrency", 1), ("max_instances", 1)):
            if opts.get(name) is not None and opts[name] < low:
                raise _usage(f"--{name.replace('_', '-')} must be at least {low}.")
        if opts["speed"] <= 0:
            raise _usage("--speed must be greater than 0.")
        if opts.get("rate") is not None and opts["rate"] <= 0:
            raise _usage("--rate must be greater than 0 patients per hour.")
        steps, scenario = self._steps_and_scenario(opts)
        send = not opts["no_send"]
        endpoints, missing = self._endpoints(opts, scenario) if send else (EndpointSet(), set())
        patients = opts.get("patients") or (scenario.default_patients if scenario else 1)
        concurrency = opts.get("concurrency") or (scenario.concurrency if scenario else 4)
        arrival, rate = (scenario.arrival, scenario.rate_per_hour) if scenario else ("all_at_once", None)
        if opts.get("rate"):
            arrival, rate = "poisson", opts["rate"]

        self._run(opts, steps, scenario, endpoints, patients, concurrency, arrival, rate, tuple(sorted(missing)))

    def _run(self, opts, steps, scenario, endpoints, patients, concurrency, arrival, rate, builtin_kinds) -> None:
        output = opts.get("output")
        options = RunOptions(
            output_dir=output.expanduser().resolve() if output else None, send=not opts["no_send"], validate_hl7=opts["validate"],
            transfer_syntax=opts["transfer_syntax"], max_instances_per_series=opts.get("max_instances"),
            speed=opts["speed"], pixel_workers=settings.YEETER["PIXEL_WORKERS"],
            sending_application=settings.YEETER["HL7_SENDING_APPLICATION"],
            sending_facility=settings.YEETER["HL7_SENDING_FACILITY"], builtin_kinds=builtin_kinds)
        try:
            run = run_create(steps_json=steps, patients=patients, concurrency=concurrency, endpoints=endpoints,
                             options=options, scenario=scenario, seed=opts.get("seed"), arrival=arrival,
                             rate_per_hour=rate)
        except ScenarioError as exc:
            raise _usage("The scenario cannot run:\n  - " + "\n  - ".join(exc.problems)) from None
        quiet = opts["json"]
        if not quiet:
            self.stdout.write(f"Run {run.id}  scenario {run.scenario_name or 'ad hoc'}  {patients} patient(s)  "
                              f"seed {run.seed}")
            for kind, target in endpoints.describe().items():
                self.stdout.write(f"  {kind:<16} -> {target}")
            commits = any(isinstance(st, dict) and st.get("step_type") == "STORAGE_COMMIT" for st in steps)
            if commits and endpoints.get("commitment") is not None and endpoints.commit_listen is None:
                self.stdout.write("  note: storage commitment reports are accepted on the requesting association only; "
                                  "most PACS report on a new one: pass --commit-listen [AET@][HOST:]PORT and register "
                                  "it in the PACS")
        tty = sys.stdout.isatty()
        progress = Progress(patients, stream=self.stdout, tty=tty, verbose=opts["verbose"], quiet=quiet)
        started: list[BuiltinReceivers] = []

        def on_receivers(receivers: BuiltinReceivers) -> None:
            started.append(receivers)
            if not quiet:
                self.stdout.write("Built-in receivers on loopback:")
                for line in receivers.describe():
                    self.stdout.write(f"  {line}")

        run = asyncio.run(self._execute(run, progress, on_receivers))
        progress.finish()
        run.refresh_from_db()
        if run.status == Run.Status.ERROR:
            raise CommandError(f"Run {run.id} could not run: {run.error}", returncode=1)
        summary = self._summary(run, started[0] if started else None)
        if quiet:
            self.stdout.write(json.dumps(summary, indent=2))
        else:
            self._table(summary)
        if run.status != Run.Status.SUCCEEDED:
            raise CommandError(f"Run {run.status}: {summary['failed']} patient(s) failed, "
                               f"{summary['cancelled']} cancelled.", returncode=1)

    async def _execute(self, run: Run, progress: Progress, on_receivers) -> Run:
        cancel = asyncio.Event()
        loop = asyncio.get_running_loop()
        interrupts = 0

        def on_interrupt() -> None:
            nonlocal interrupts
            interrupts += 1
            if interrupts > 1:
                raise KeyboardInterrupt
            self.stderr.write("\nStopping: finishing steps in flight (Ctrl-C again to abort).")
            cancel.set()

        try:
            loop.add_signal_handler(signal.SIGINT, on_interrupt)
        except (NotImplementedError, RuntimeError):
            pass  # not the main thread (tests) or not supported: Ctrl-C then aborts at once
        try:
            return await run_execute_async(run, listeners=[progress], cancel=cancel, on_receivers=on_receivers)
        finally:
            try:
                loop.remove_signal_handler(signal.SIGINT)
            except (NotImplementedError, RuntimeError):
                pass

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
            {"index": p.index + 1, "status": p.status, "exam": p.exam_code, "modality": p.modality,
             "accession": p.accession_number, "instances": p.instances,
             "verified": bool(p.verification.get("ok")), "error": p.error}
            for p in run.patients.order_by("index")
        ]
        return summary

    def _table(self, s: dict[str, Any]) -> None:
        width = min(shutil.get_terminal_size((100, 20)).columns, 120)
        self.stdout.write("")
        self.stdout.write(f"{'#':>4}  {'status':<9} {'exam':<28} {'mod':<3} {'accession':<17} {'inst':>5}  verified")
        for p in s["patient_rows"]:
            line = (f"{p['index']:>4}  {p['status']:<9} {p['exam'][:28]:<28} {p['modality']:<3} "
                    f"{p['accession']:<17} {p['instances']:>5}  {'yes' if p['verified'] else 'no'}")
            self.stdout.write(line[:width])
            if p["error"]:
                self.stdout.write(f"      {p['error']}"[:width * 2])
        acks = ", ".join(f"{k} {v}" for k, v in sorted(s.get("acks", {}).items())) or "none"
        rows = [
            ("Patients", f"{s['passed']} ok, {s['failed']} failed, {s['cancelled']} cancelled of {s['patients']}"),
            ("HL7 messages", f"{s['hl7_messages']} sent; ACKs: {acks}; {s['reports']} reports"),
            ("Worklist", f"{s['worklist_published']} published, {s['worklist_found']} found by C-FIND"),
            ("MPPS", f"{s['mpps']} messages"),
            ("Instances", f"{s['instances_generated']} generated, {s['instances_stored']} stored, "
                          f"{s['instances_failed']} failed, {s['committed']} committed; {s['megabytes']} MB"),
            ("Throughput", f"{s['patients_per_minute']} patients/min, {s['instances_per_second']} instances/s, "
                           f"{s['megabytes_per_second']} MB/s in {s['duration_s']} s"),
            ("Verification", f"{s['verified']}/{s['patients']} patients consistent"),
            ("Files", s["output_dir"]),
        ]
        self.stdout.write("")
        for label, value in rows:
            self.stdout.write(f"{label:<13} {value}")
        style = self.style.SUCCESS if s["status"] == "succeeded" else self.style.ERROR
        self.stdout.write(style(f"Run {s['status']}."))


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
