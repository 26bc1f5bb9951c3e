"""A run whose endpoints use TLS: configured in Endpoint rows (the scenario's defaults) or by runsim flags."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from simulations.endpoints import EndpointSet, target_for
from simulations.models import Endpoint, Scenario
from simulations.transport.dimse.storage_scp import StorageScp
from simulations.transport.mllp_server import MllpServer
from simulations.transport.tls import server_context

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

STEPS = [{"step_type": "REGISTER_PATIENT"}, {"step_type": "GENERATE_HL7", "modality": "CT"},
         {"step_type": "SEND_HL7"}, {"step_type": "GENERATE_DICOM"}, {"step_type": "SEND_DICOM"},
         {"step_type": "SEND_REPORT"}]


@pytest.fixture
def tls_peers(pki, tmp_path):
    context = server_context(cert_file=pki.cert, key_file=pki.key)
    listener = MllpServer("127.0.0.1", 0, ssl_context=context).start_in_thread()
    scp = StorageScp(ae_title="TLS_PACS", storage_dir=tmp_path / "pacs", ssl_context=context)
    scp.start()
    yield listener, scp
    scp.stop()
    listener.stop()


def _runsim(*args: str) -> dict:
    out = io.StringIO()
    call_command("runsim", *args, "--json", stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue())


def test_endpoints_with_tls_carry_a_whole_run(catalog_tx, pki, tls_peers, tmp_path):
    listener, scp = tls_peers
    hl7 = Endpoint.objects.create(name="ris-tls", kind="hl7", host="127.0.0.1", port=listener.port, tls=True,
                                  tls_ca_file=str(pki.ca))
    pacs = Endpoint.objects.create(name="pacs-tls", kind="storage", host="127.0.0.1", port=scp.port,
                                   ae_title="TLS_PACS", tls=True, tls_ca_file=str(pki.ca))
    scenario = Scenario.objects.create(name="tls chain", steps=STEPS)
    scenario.endpoints.set([hl7, pacs])
    result = _runsim("--scenario", "tls chain", "--patients", "2", "--seed", "6", "--max-instances", "1",
                     "--output", str(tmp_path / "run"))
    assert result["status"] == "succeeded", result["patient_rows"]
    assert len(listener.messages) == 6  # ADT, ORM, ORU per patient, all inside TLS
    assert len(scp.stored()) == result["instances_stored"] == result["instances_generated"]
    # the run records the TLS settings it used, and they survive the round trip
    from simulations.models import Run

    snapshot = Run.objects.get(pk=result["run_id"]).endpoints
    assert snapshot["by_kind"]["storage"]["tls"] == {"verify": True, "ca_file": str(pki.ca)}
    assert EndpointSet.from_json(snapshot).get("storage").tls is not None
    assert str(target_for(hl7)).endswith("(TLS)")


def test_runsim_tls_flags_and_an_untrusted_peer(catalog_tx, pki, tls_peers, tmp_path):
    listener, scp = tls_peers
    Scenario.objects.create(name="tls chain", steps=STEPS)
    flags = ["--scenario", "tls chain", "--patients", "1", "--seed", "6", "--max-instances", "1",
             "--hl7", f"127.0.0.1:{listener.port}", "--pacs", f"TLS_PACS@127.0.0.1:{scp.port}", "--tls"]
    ok = _runsim(*flags, "--tls-ca", str(pki.ca), "--output", str(tmp_path / "a"))
    assert ok["status"] == "succeeded", ok["patient_rows"]
    # trusting another CA: the certificate does not verify; the patient fails, naming the problem
    with pytest.raises(CommandError) as err:
        _runsim(*flags, "--tls-ca", str(pki.other_ca), "--output", str(tmp_path / "b"))
    assert err.value.returncode == 1
    from simulations.models import RunPatient

    failed = RunPatient.objects.filter(status="failed").get()
    assert "step 1 (REGISTER_PATIENT)" in failed.error and "certificate" in failed.error
    with pytest.raises(CommandError, match="only apply with --tls") as err:
        _runsim("--scenario", "tls chain", "--tls-no-verify")
    assert err.value.returncode == 2
    with pytest.raises(CommandError, match="TLS: ") as err:
        _runsim(*flags, "--tls-ca", str(tmp_path / "missing.pem"))
    assert err.value.returncode == 2


def test_the_endpoint_model_refuses_an_unreadable_ca_file_and_tls_on_a_folder(tmp_path):
    from django.core.exceptions import ValidationError

    endpoint = Endpoint(name="bad-ca", kind="storage", host="127.0.0.1", port=104, ae_title="PACS", tls=True,
                        tls_ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ValidationError) as err:
        endpoint.full_clean()
    assert "tls_ca_file" in err.value.message_dict
    folder = Endpoint(name="wl", kind="worklist_folder", folder=str(tmp_path), tls=True)
    with pytest.raises(ValidationError, match="TLS does not apply"):
        folder.full_clean()
