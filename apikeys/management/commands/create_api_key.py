"""``manage.py create_api_key NAME [--owner USERNAME]``: print a new API key once."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apikeys.services import api_key_create


class Command(BaseCommand):
    help = ("Create an API key for the simulator API and print it. Only its hash is stored: copy the key now. "
            "Use it as 'X-API-Key: KEY' or 'Authorization: ApiKey KEY'.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="Who or what uses the key, e.g. ci-pipeline.")
        parser.add_argument("--owner", help="Username of the person responsible for the key.")

    def handle(self, *args, name: str, owner: str | None = None, **options) -> None:
        user = None
        if owner:
            try:
                user = get_user_model().objects.get_by_natural_key(owner)
            except get_user_model().DoesNotExist:
                raise CommandError(f"There is no user {owner!r}; create it first or leave out --owner.") from None
        try:
            key, raw_key = api_key_create(name=name, owner=user)
        except ValidationError as exc:
            raise CommandError(f"Cannot create the key: {'; '.join(exc.messages)}") from None
        # The key alone on stdout so scripts can capture it: KEY=$(manage.py create_api_key ci)
        self.stdout.write(raw_key)
        self.stderr.write(f"Created API key {key.prefix}… for {key.name}. It is not stored in clear: keep it now.")
