"""``manage.py serve``: run the built-in receivers for external tools until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from simulations.receivers import BuiltinReceivers, ReceiverPorts


class Command(BaseCommand):
    help = ("Start the built-in receivers as a small RIS/PACS: HL7 MLLP listener (orders become worklist items), "
            "DICOM Storage SCP (with storage commitment) and a Study Root C-FIND SCP over what it received, "
            "Modality Worklist SCP and MPPS SCP (which moves the items' status). Stops on Ctrl-C.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=settings.YEETER["BIND_ADDRESS"],
                            help="bind address (default %(default)s; loopback unless you mean otherwise)")
        parser.add_argument("--hl7-port", type=int, default=2575)
        parser.add_argument("--storage-port", type=int, default=11112)
        parser.add_argument("--mwl-port", type=int, default=11113)
        parser.add_argument("--mpps-port", type=int, default=11114)
        parser.add_argument("--query-port", type=int, default=11115,
                            help="Study Root C-FIND SCP over what the Storage SCP received (AE title <prefix>_QR)")
        parser.add_argument("--storage-dir", type=Path, default=None,
                            help="where received instances go (default YEETER_DATA_DIR/received)")
        parser.add_argument("--station-aet", action="append", default=[], metavar="MODALITY=AET",
                            help="Scheduled Station AE Title the built-in RIS gives orders of MODALITY (repeatable; "
                                 "*=AET for every modality; default: empty, any station)")
        parser.add_argument("--commit-reply", choices=["same", "new"], default="same",
                            help="send Storage Commitment reports on the requesting association (same, default) or "
                                 "on a new one to the requestor's address, as most PACS do (new)")
        parser.add_argument("--commit-peer", action="append", default=[], metavar="AET=PORT",
                            help="with --commit-reply new: the port each requesting AE title listens on (repeatable)")
        parser.add_argument("--ae-prefix", default="YEETER", help="AE titles are <prefix>_PACS, _QR, _MWL, _MPPS")

    def handle(self, *args, host: str, hl7_port: int, storage_port: int, mwl_port: int, mpps_port: int,
               query_port: int, storage_dir: Path | None, ae_prefix: str, station_aet: list[str],
               commit_reply: str, commit_peer: list[str], **options) -> None:
        for name, port in (("--hl7-port", hl7_port), ("--storage-port", storage_port), ("--mwl-port", mwl_port),
                           ("--mpps-port", mpps_port), ("--query-port", query_port)):
            if not 0 <= port < 65536:
                raise CommandError(f"{name} must be from 0 to 65535, got {port}.", returncode=2)
        if len(ae_prefix) > 11:
            raise CommandError("--ae-prefix is at most 11 characters (AE titles are 16 with the suffix).",
                               returncode=2)
        stations: dict[str, str] = {}
        for entry in station_aet:
            modality, sep, aet = entry.partition("=")
            if not sep or not modality or not 0 < len(aet) <= 16:
                raise CommandError(f"--station-aet expects MODALITY=AET with a 1-16 character AE title, got "
                                   f"{entry!r}.", returncode=2)
            stations[modality.strip().upper() if modality != "*" else "*"] = aet.strip()
        peers: dict[str, int] = {}
        for entry in commit_peer:
            aet, sep, port = entry.rpartition("=")
            if not sep or not 0 < len(aet) <= 16 or not port.isdigit() or not 0 < int(port) < 65536:
                raise CommandError(f"--commit-peer expects AET=PORT (a 1-16 character AE title, a port from 1 to "
                                   f"65535), got {entry!r}.", returncode=2)
            peers[aet] = int(port)
        if peers and commit_reply != "new":
            raise CommandError("--commit-peer only applies with --commit-reply new.", returncode=2)
        from simulations.housekeeping import runs_housekeep

        runs_housekeep()  # a Yeeter process starting: end the runs whose process died
        receivers = BuiltinReceivers(storage_dir=storage_dir or Path(settings.DATA_DIR) / "received", host=host,
                                     ports=ReceiverPorts(hl7_port, storage_port, mwl_port, mpps_port, query_port),
                                     ae_prefix=ae_prefix, station_ae_titles=stations, commitment_reply=commit_reply,
                                     commitment_peers=peers)
        try:
            receivers.start()
        except OSError as exc:
            raise CommandError(f"Could not start the receivers: {exc}.") from None
        stop = threading.Event()
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            self.stdout.write("Built-in receivers running (Ctrl-C to stop); orders received over HL7 become "
                              "worklist items, MPPS moves their status:")
            for line in receivers.describe():
                self.stdout.write(f"  {line}")
            self.stdout.flush()
            while not stop.wait(0.5):
                pass
        finally:
            signal.signal(signal.SIGINT, previous)
            receivers.stop()
            self.stdout.write(f"{receivers.ris.scheduled} order(s) scheduled on the worklist.")
            self.stdout.write("Receivers stopped.")
