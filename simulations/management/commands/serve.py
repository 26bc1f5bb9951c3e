"""``manage.py serve``: run the built-in receivers for external tools until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from simulations.receivers import BuiltinReceivers, ReceiverPorts


class Command(BaseCommand):
    help = ("Start the built-in receivers: HL7 MLLP listener, DICOM Storage SCP (with storage commitment), "
            "Modality Worklist SCP (serving the entries runs publish) and MPPS SCP. Stops on Ctrl-C.")

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
        parser.add_argument("--ae-prefix", default="YEETER", help="AE titles are <prefix>_PACS, _QR, _MWL, _MPPS")

    def handle(self, *args, host: str, hl7_port: int, storage_port: int, mwl_port: int, mpps_port: int,
               query_port: int, storage_dir: Path | None, ae_prefix: str, **options) -> None:
        for name, port in (("--hl7-port", hl7_port), ("--storage-port", storage_port), ("--mwl-port", mwl_port),
                           ("--mpps-port", mpps_port), ("--query-port", query_port)):
            if not 0 <= port < 65536:
                raise CommandError(f"{name} must be from 0 to 65535, got {port}.", returncode=2)
        if len(ae_prefix) > 11:
            raise CommandError("--ae-prefix is at most 11 characters (AE titles are 16 with the suffix).",
                               returncode=2)
        receivers = BuiltinReceivers(storage_dir=storage_dir or Path(settings.DATA_DIR) / "received", host=host,
                                     ports=ReceiverPorts(hl7_port, storage_port, mwl_port, mpps_port, query_port),
                                     ae_prefix=ae_prefix)
        try:
            receivers.start()
        except OSError as exc:
            raise CommandError(f"Could not start the receivers: {exc}.") from None
        stop = threading.Event()
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            self.stdout.write("Built-in receivers running (Ctrl-C to stop):")
            for line in receivers.describe():
                self.stdout.write(f"  {line}")
            self.stdout.flush()
            while not stop.wait(0.5):
                pass
        finally:
            signal.signal(signal.SIGINT, previous)
            receivers.stop()
            self.stdout.write("Receivers stopped.")
