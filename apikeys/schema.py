"""OpenAPI security scheme for :class:`apikeys.authentication.ApiKeyAuthentication` (drf-spectacular)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apikeys.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "An API key from `manage.py create_api_key NAME` or admin. "
                           "`Authorization: ApiKey KEY` is accepted too.",
        }
