"""``manage.py runsim``'s flags turned into what a run needs: checked values, the steps, the endpoints.

Every mistake is found before anything is created and reported as one sentence with exit status 2
(:func:`usage_error`); nothing here prints or runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from simulations.endpoints import (
    CommitListen,
    EndpointPeer,
    EndpointSet,
    HL7Target,
    TlsSettings,
    endpoint_set_from_rows,
)
from simulations.models import AE_TITLE_VALIDATOR, Endpoint, Scenario
from simulations.services import missing_kinds
from simulations.steps import MAX_INSTANCES_PER_SERIES
from simulations.transport.dimse.common import DicomPeer
from simulations.transport.tls import TlsConfigError

DEFAULT_SCENARIO = "Full scheduled workflow"
# What Run.seed (a signed 64-bit BigIntegerField) holds; the API refuses the same range.
MAX_SEED = 2**63 - 1
MAX_CONCURRENCY = 256  # Scenario.concurrency's limit


def usage_error(message: str) -> CommandError:
    """An operator mistake: one sentence, exit status 2."""
    return CommandError(message, returncode=2)


def finite_number(text: str) -> float:
    """argparse type: a finite number (``nan`` and ``inf`` parse as floats but mean nothing here)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def writable_dir(path: Path, flag: str, *, must_exist: bool) -> Path:
    """``path`` resolved, after proving a file can be created there (or in the folder that would hold
    it): a probe, not ``os.access``, which says yes to root even on a read-only file system."""
    path = path.expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise usage_error(f"{flag} {path} is not a directory.")
    if must_exist and not path.exists():
        raise usage_error(f"{flag} {path} does not exist.")
    probe_in = path
    while not probe_in.exists():
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise usage_error(f"{flag} {path}: {probe_in} is not a directory.")
    try:
        fd, name = tempfile.mkstemp(dir=probe_in, prefix=".yeeter-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise usage_error(f"{flag} {path} cannot be written ({exc.strerror or exc}).") from None
    return path


def steps_and_scenario(opts: dict) -> tuple[list, Scenario | None]:
    """The steps to run and the scenario they come from: ``--scenario`` (default the full workflow), with
    ``--verify-pacs``/``--qido`` and the exam selectors applied to its GENERATE_HL7 steps."""
    selectors = {k: opts[k] for k in ("exam", "cpt", "modality", "body_part", "setting") if opts.get(k)}
    if opts.get("scenario"):
        scenario = Scenario.objects.filter(name=opts["scenario"]).first()
        if scenario is None:
            names = ", ".join(Scenario.objects.values_list("name", flat=True)) or "none loaded"
            raise usage_error(f"No scenario named {opts['scenario']!r} (available: {names}).")
    else:
        scenario = Scenario.objects.filter(name=DEFAULT_SCENARIO).first()
        if scenario is None:
            raise usage_error(f"The default scenario {DEFAULT_SCENARIO!r} is not loaded: run "
                              "`manage.py load_scenarios` first (scripts/run does).")
    steps = json_copy(scenario.steps)
    if opts.get("verify_pacs") or opts.get("qido"):
        steps = with_verify_pacs(steps, qido=opts.get("qido"))
    if selectors:
        if opts.get("exam") and opts.get("cpt"):
            raise usage_error("Give either --exam or --cpt, not both.")
        if (opts.get("exam") or opts.get("cpt")) and any(k in selectors for k in ("modality", "body_part")):
            raise usage_error("--modality/--body-part filter a random choice; they cannot be combined with "
                              "--exam or --cpt.")
        for step in steps:
            if isinstance(step, dict) and step.get("step_type") == "GENERATE_HL7":
                for key in ("exam_id", "cpt_code", "modality", "body_part", "laterality", "setting"):
                    step.pop(key, None)
                mapping = {"exam": "exam_id", "cpt": "cpt_code", "modality": "modality",
                           "body_part": "body_part", "setting": "setting"}
                step.update({mapping[k]: v for k, v in selectors.items()})
    return steps, scenario


def endpoints_from_flags(opts: dict, scenario: Scenario | None) -> tuple[EndpointSet, set[str]]:
    """External endpoints from flags (and the scenario's own), plus the kinds left for built-ins."""
    rows = list(scenario.endpoints.all()) if scenario else []
    endpoints = endpoint_set_from_rows(Endpoint.objects.all(), defaults=rows)
    calling = opts["calling_aet"]
    if (opts.get("tls_ca") or opts.get("tls_no_verify")) and not opts.get("tls"):
        raise usage_error("--tls-ca and --tls-no-verify only apply with --tls.")
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
        raise usage_error(f"TLS: {exc.message}") from None
    except ValueError as exc:
        raise usage_error(f"Bad endpoint: {exc}.") from None
    if opts.get("commit_listen"):
        try:
            listen = CommitListen.parse(opts["commit_listen"], ae_title=calling)
        except ValueError as exc:
            raise usage_error(f"Bad --commit-listen: {exc}.") from None
        endpoints = dataclasses.replace(endpoints, commit_listen=listen)
    if opts.get("worklist_dir") is not None:
        folder = writable_dir(opts["worklist_dir"], "--worklist-dir", must_exist=True)
        endpoints = endpoints.with_kind("worklist_folder", folder)
    return endpoints, set(missing_kinds(endpoints))


def check_flags(opts: dict) -> None:
    """Every flag checked before anything is created; each mistake is one sentence and exit status 2."""
    for name, low, high in (("patients", 1, None), ("concurrency", 1, MAX_CONCURRENCY),
                            ("max_instances", 1, MAX_INSTANCES_PER_SERIES), ("seed", 0, MAX_SEED)):
        value = opts.get(name)
        if value is None:
            continue
        flag = f"--{name.replace('_', '-')}"
        if value < low or (high is not None and value > high):
            raise usage_error(f"{flag} must be at least {low}, got {value}." if high is None
                              else f"{flag} must be from {low} to {high}, got {value}.")
    if opts["speed"] <= 0:
        raise usage_error("--speed must be greater than 0.")
    if opts.get("rate") is not None and opts["rate"] <= 0:
        raise usage_error("--rate must be greater than 0 patients per hour.")
    try:
        AE_TITLE_VALIDATOR(opts["calling_aet"])
    except Exception:  # noqa: BLE001 - django.core.exceptions.ValidationError; its message is ours
        raise usage_error(f"--calling-aet must be 1 to 16 printable ASCII characters, got {opts['calling_aet']!r}.") \
            from None
    if opts.get("output") is not None:
        opts["output"] = writable_dir(opts["output"], "--output", must_exist=False)
    else:
        writable_dir(Path(settings.DATA_DIR) / "runs", "YEETER_DATA_DIR/runs", must_exist=False)


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
        raise usage_error("--verify-pacs checks the study stored by a SEND_DICOM step; this scenario has none.")
    anchor = max(i for i, t in enumerate(types) if t in ("SEND_DICOM", "STORAGE_COMMIT"))
    added = {"step_type": "VERIFY_PACS", **({"qido": qido} if qido else {})}
    return [*steps[:anchor + 1], added, *steps[anchor + 1:]]


def json_copy(value):
    """A deep copy of JSON data (the scenario's stored steps), so editing it leaves the scenario alone."""
    return json.loads(json.dumps(value))
