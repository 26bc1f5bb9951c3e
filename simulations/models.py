"""Scenarios, endpoints and runs: what to simulate, where to send it, and what happened.

A ``Run`` has one ``RunPatient`` per patient story (one order) and an ordered stream of ``RunEvent``
rows; ``WorklistEntry`` rows are the scheduled procedure steps the built-in MWL SCP serves.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

AE_TITLE_VALIDATOR = RegexValidator(r"^[ -~]{1,16}$", "An AE title is 1-16 printable ASCII characters.")


class Endpoint(models.Model):
    """A peer system Yeeter talks to: RIS/interface engine (MLLP), PACS, worklist, MPPS, commitment SCP."""

    class Kind(models.TextChoices):
        HL7 = "hl7", "HL7 v2 over MLLP"
        STORAGE = "storage", "DICOM Storage SCP (C-STORE)"
        MWL = "mwl", "Modality Worklist SCP (C-FIND)"
        MPPS = "mpps", "MPPS SCP (N-CREATE/N-SET)"
        COMMITMENT = "commitment", "Storage Commitment SCP (N-ACTION)"
        WORKLIST_FOLDER = "worklist_folder", "Worklist folder (.wl files for wlmscpfs/Orthanc)"

    class HL7Version(models.TextChoices):
        V251 = "2.5.1", "2.5.1"
        V231 = "2.3.1", "2.3.1"

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    host = models.CharField(max_length=255, blank=True, default="")
    port = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1),
                                                                           MaxValueValidator(65535)])
    ae_title = models.CharField("called AE title", max_length=16, blank=True, default="",
                                validators=[AE_TITLE_VALIDATOR])
    calling_ae_title = models.CharField(max_length=16, default="YEETER", validators=[AE_TITLE_VALIDATOR])
    hl7_receiving_application = models.CharField(max_length=64, blank=True, default="")
    hl7_receiving_facility = models.CharField(max_length=64, blank=True, default="")
    hl7_version = models.CharField(max_length=8, choices=HL7Version.choices, default=HL7Version.V251)
    folder = models.CharField(max_length=500, blank=True, default="",
                              help_text="Worklist folder endpoints: the folder wlmscpfs/Orthanc serves.")
    connect_timeout = models.FloatField(default=5.0, validators=[MinValueValidator(0.1), MaxValueValidator(600)])
    timeout = models.FloatField("read timeout", default=30.0, validators=[MinValueValidator(0.1),
                                                                          MaxValueValidator(3600)])
    tls = models.BooleanField("TLS", default=False)
    tls_verify = models.BooleanField("verify the peer's certificate", default=True)
    tls_ca_file = models.CharField(max_length=500, blank=True, default="")
    # Storage commitment only: where the PACS sends its N-EVENT-REPORT on a new association (PS3.4 J.3.3).
    listen_host = models.CharField("commitment reports: listen host", max_length=255, blank=True, default="",
                                   help_text="Address our commitment listener binds (empty: 0.0.0.0).")
    listen_port = models.PositiveIntegerField("commitment reports: listen port", null=True, blank=True,
                                              validators=[MinValueValidator(1), MaxValueValidator(65535)],
                                              help_text="Port the PACS connects back to with its N-EVENT-REPORT; "
                                                        "register YEETER@this-host:port in the PACS.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.kind == self.Kind.WORKLIST_FOLDER:
            if not self.folder:
                errors["folder"] = "A worklist folder endpoint needs the folder to write .wl files into."
        else:
            if not self.host:
                errors["host"] = "This endpoint needs a host."
            if not self.port:
                errors["port"] = "This endpoint needs a port."
        if self.kind in {self.Kind.STORAGE, self.Kind.MWL, self.Kind.MPPS, self.Kind.COMMITMENT} and not self.ae_title:
            errors["ae_title"] = "A DICOM endpoint needs the called AE title."
        if self.tls and self.kind == self.Kind.WORKLIST_FOLDER:
            errors["tls"] = "A worklist folder is written to disk; TLS does not apply."
        elif self.tls and self.tls_verify and self.tls_ca_file:
            from simulations.transport.tls import TlsConfigError, client_context

            try:
                client_context(verify=True, ca_file=self.tls_ca_file)
            except TlsConfigError as exc:
                errors["tls_ca_file"] = exc.message
        if errors:
            raise ValidationError(errors)

    @property
    def address(self) -> str:
        if self.kind == self.Kind.WORKLIST_FOLDER:
            return self.folder
        if self.kind == self.Kind.HL7:
            return f"{self.host}:{self.port}"
        return f"{self.ae_title}@{self.host}:{self.port}"


class Scenario(models.Model):
    """A named, ordered list of steps (EXAMGEN-4.0 step format) and how patients arrive."""

    class Arrival(models.TextChoices):
        ALL_AT_ONCE = "all_at_once", "All at once"
        POISSON = "poisson", "Poisson arrivals (N patients per hour)"

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    steps = models.JSONField(help_text='Ordered steps, e.g. [{"step_type": "GENERATE_HL7", "exam_id": '
                                       '"MR-KNEE-RIGHT-WO"}, {"step_type": "SEND_HL7"}]')
    default_patients = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1),
                                                                          MaxValueValidator(100000)])
    concurrency = models.PositiveIntegerField(default=4, validators=[MinValueValidator(1), MaxValueValidator(256)])
    arrival = models.CharField(max_length=16, choices=Arrival.choices, default=Arrival.ALL_AT_ONCE)
    rate_per_hour = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.001)],
                                      help_text="Poisson arrivals: mean patients per hour.")
    endpoints = models.ManyToManyField(Endpoint, blank=True, related_name="scenarios",
                                       help_text="Default endpoint per kind for steps that name none.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # The same validation as the runs API and runsim (steps, then the exams and CPT codes they name),
        # so admin refuses on save what a run would refuse when it starts. Imported here: services import models.
        from simulations.services import scenario_validate
        from simulations.steps import ScenarioError

        if self.arrival == self.Arrival.POISSON and not self.rate_per_hour:
            raise ValidationError({"rate_per_hour": "Poisson arrivals need a rate (patients per hour)."})
        try:
            scenario_validate(steps_json=self.steps)
        except ScenarioError as exc:
            raise ValidationError({"steps": exc.problems}) from None


class Run(models.Model):
    """One execution of a scenario for N patients."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed (some patients)"
        CANCELLED = "cancelled", "Cancelled"
        ERROR = "error", "Error (run aborted)"
        ABANDONED = "abandoned", "Abandoned (its process died)"

    FINISHED = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.ERROR, Status.ABANDONED})

    class Executor(models.TextChoices):
        IN_PROCESS = "in_process", "In process"
        CELERY = "celery", "Celery workers"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    scenario = models.ForeignKey(Scenario, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    scenario_name = models.CharField(max_length=100, blank=True, default="")
    steps = models.JSONField()
    patient_count = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    concurrency = models.PositiveIntegerField(default=4, validators=[MinValueValidator(1)])
    arrival = models.CharField(max_length=16, choices=Scenario.Arrival.choices, default=Scenario.Arrival.ALL_AT_ONCE)
    rate_per_hour = models.FloatField(null=True, blank=True)
    seed = models.BigIntegerField()
    options = models.JSONField(default=dict, blank=True, help_text="Run options (output dir, send, validate...).")
    endpoints = models.JSONField(default=dict, blank=True, help_text="Resolved endpoints by kind (snapshot).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    cancel_requested = models.BooleanField(default=False)
    output_dir = models.CharField(max_length=500, blank=True, default="")
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Who started it: a logged-in user (page, browsable API) or an API key; neither for runsim/admin.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="runs")
    api_key = models.ForeignKey("apikeys.ApiKey", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="runs")
    # Liveness of the process executing the run ("host:pid"); a stale heartbeat means it is gone.
    worker = models.CharField(max_length=200, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # In this process (a thread of runsim, the web server) or one Celery task per patient on any worker.
    executor = models.CharField(max_length=16, choices=Executor.choices, default=Executor.IN_PROCESS)
    event_seq = models.PositiveIntegerField(default=0, help_text="The last event's seq (allocated in the database).")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "-created_at"])]

    def __str__(self) -> str:
        return f"run {self.short_id} ({self.scenario_name or 'ad hoc'}, {self.status})"

    @property
    def short_id(self) -> str:
        return str(self.id)[:8]

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class RunPatient(models.Model):
    """One patient story (one order) of a run: the exam bound to it, its identity set and its outcome."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="patients")
    index = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    exam = models.ForeignKey("exams.ExamSpec", null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="run_patients")
    exam_code = models.CharField("exam id", max_length=40, blank=True, default="")
    exam_name = models.CharField(max_length=200, blank=True, default="")
    modality = models.CharField(max_length=2, blank=True, default="")
    cpt_code = models.CharField(max_length=16, blank=True, default="")
    patient_id = models.CharField(max_length=64, blank=True, default="")
    patient_name = models.CharField(max_length=200, blank=True, default="")
    accession_number = models.CharField(max_length=16, blank=True, default="", db_index=True)
    study_instance_uid = models.CharField(max_length=64, blank=True, default="")
    instances = models.PositiveIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    verification = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The story's plan (simulations.plan.PatientPlan as JSON): made once, kept, so a story redone is the same.
    plan = models.JSONField(default=dict, blank=True)
    stats = models.JSONField(default=dict, blank=True, help_text="What the story sent and made (RunStats).")
    # Scale-out: when the patient arrives (its task's ETA), who executes it, and since when it is silent.
    due_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a worker took the story up.")

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="runpatient_unique_index")]

    def __str__(self) -> str:
        return f"patient {self.number} of {self.run_id}: {self.exam_code} {self.status}"

    @property
    def number(self) -> int:
        """The patient's number as people see it (URLs, events, admin, API, CLI): ``index`` counts from 0."""
        return self.index + 1


class RunEvent(models.Model):
    """One thing that happened in a run, in order (``seq`` counts from 1 within the run)."""

    class Level(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    patient = models.ForeignKey(RunPatient, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    step_index = models.IntegerField(null=True, blank=True)
    step_type = models.CharField(max_length=32, blank=True, default="")
    type = models.CharField(max_length=48)
    level = models.CharField(max_length=8, choices=Level.choices, default=Level.INFO)
    message = models.TextField()
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="runevent_unique_seq")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.type}: {self.message}"


class WorklistEntry(models.Model):
    """A scheduled procedure step published by a run, served by the built-in MWL SCP."""

    class Status(models.TextChoices):
        SCHEDULED = "SCHEDULED", "Scheduled"
        IN_PROGRESS = "IN PROGRESS", "In progress"
        COMPLETED = "COMPLETED", "Completed"
        DISCONTINUED = "DISCONTINUED", "Discontinued"

    # Null for orders that reached the built-in RIS from another sender (not a Yeeter run).
    patient = models.OneToOneField(RunPatient, null=True, blank=True, on_delete=models.CASCADE,
                                   related_name="worklist_entry")
    accession_number = models.CharField(max_length=16, db_index=True)
    modality = models.CharField(max_length=2)
    station_ae_title = models.CharField(max_length=16)
    scheduled_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    dataset = models.JSONField(help_text="The MWL item in the DICOM JSON model (PS3.18 F.2).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["scheduled_at", "accession_number"]
        verbose_name_plural = "worklist entries"

    def __str__(self) -> str:
        return f"{self.accession_number} {self.modality} {self.scheduled_at:%Y-%m-%d %H:%M} {self.status}"
