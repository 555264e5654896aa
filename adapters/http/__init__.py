"""``movecar serve``: the engine over HTTP for hosts in any language (docs/http.md).

:func:`create_app` builds the ASGI application around an engine from the composition root
(:func:`movecar_adapters.connect`); ``movecar serve`` runs it under uvicorn. Its ``GET /``
is the status page (:mod:`movecar_adapters.http.status`). :class:`MoveCarClient` is the
Python client of the service (one actor's commands and reads).
"""

from movecar_adapters.http.app import MAX_BODY, create_app
from movecar_adapters.http.auth import TokenTable, new_token, parse_tokens
from movecar_adapters.http.client import (
    MoveCarClient,
    ServiceAccessRefused,
    ServiceCaseRefused,
    ServiceInputRefused,
    ServiceProblem,
    ServiceUnavailable,
)
from movecar_adapters.http.signature import (
    HEADER as SIGNATURE_HEADER,
)
from movecar_adapters.http.signature import (
    TOLERANCE,
    SignatureRefused,
    SignatureReplayed,
    Verifier,
    sign,
)

__all__ = [
    "MAX_BODY",
    "SIGNATURE_HEADER",
    "TOLERANCE",
    "MoveCarClient",
    "ServiceAccessRefused",
    "ServiceCaseRefused",
    "ServiceInputRefused",
    "ServiceProblem",
    "ServiceUnavailable",
    "SignatureRefused",
    "SignatureReplayed",
    "TokenTable",
    "Verifier",
    "create_app",
    "new_token",
    "parse_tokens",
    "sign",
]
