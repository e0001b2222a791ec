"""The connector kit: what every gateway connector is built from.

A new connector starts here, not from a neighbour. The shape (see ``connectors/mpgs`` or
``connectors/tabby`` for complete examples)::

    connectors/<name>/
        connector.py     # the Connector subclass: addressing, calls, and nothing else
        transformers.py  # pydantic models of the protocol, request bodies, status → Outcome
                         # tables, and the pure decisions (reply → GatewayResult)
        notifications.py # verifying and parsing incoming notifications (if any)

A minimal connector::

    from payops.connectors import kit
    from payops.connectors.base import Connector, GatewayResult, OperationRequest, Outcome

    REDACTION = kit.redaction(drop=("cvv", "token"), card_keys=("card_number",))

    class AcmeConnector(Connector):
        name = "acme"
        capabilities = frozenset({"capture", "refund", "inquiry"})
        required_credentials = ("api_key",)
        personal_fields = kit.field_set(("email", "phone", "billing_address"))

        def __init__(self, config):
            super().__init__(config)
            self.client = kit.GatewayClient(
                "acme", base_url=kit.base_url(config, "https://api.acme.example") or "",
                timeout=config.timeout_seconds,
                headers={"Authorization": f"Bearer {kit.credential(config, 'api_key')}"})

        async def aclose(self):
            await self.client.aclose()

        async def capture(self, request: OperationRequest) -> GatewayResult:
            reply = await self.client.request("POST", "/captures", json={...})   # or form=/xml=
            if reply.outcome_unknown:
                return kit.unknown("Acme did not answer", reply.raw(REDACTION))
            if not reply.ok:
                return kit.refused("Acme refused the capture", reply.raw(REDACTION))
            found = kit.result(Outcome.SUCCESS, reply.raw(REDACTION), params, "Captured",
                               refs, amount=recorded_minor, currency_code=recorded_currency)
            return kit.check_recorded(found, request, gateway="Acme")

Rules the kit enforces or assumes:

- **Transport** (``GatewayClient``): shared TLS context, the configuration's timeout, no
  redirects, one ``Reply`` type, one ``Fault`` vocabulary (``NOT_SENT`` → the gateway did
  nothing; ``TIMEOUT``/``RESET``/``TRANSPORT`` → unknown). JSON is decoded with ``Decimal``
  numbers and written with :func:`encode_json` (Decimal exact, float refused). ``form=`` and
  ``xml=`` bodies, and ``decode="form"|"xml"|"text"`` answers, are supported. A call made of
  several requests shares one ``Deadline``; ``guarded`` is the outer never-raise wrapper.
- **Results**: ``result``/``unknown``/``not_sent``/``refused``; a success carries the amount and
  currency the gateway recorded, and ``check_recorded`` turns a different one into unknown.
- **Redaction**: ``Redaction.scrub`` (secrets dropped, card numbers masked) on every reply kept,
  and ``personal_fields`` (``field_set``) for buyer data, which PayOps redacts before storing.
- **Hosted pages** (form-post gateways): ``form_post`` for the browser's form, and
  ``held_already`` before a retried start re-sends an attempt the gateway may hold.
- **Options and credentials**: read with ``text_option``/``flag_option``/``float_option``/
  ``base_url`` and ``credential``, which never raise.
- A connector never touches the database and never raises for a gateway problem.

Registering it: see "Adding a gateway" in ``docs/gateways.md``.
"""

from payops.connectors.kit.checkout import form_post, held_already
from payops.connectors.kit.options import (
    base_url,
    credential,
    flag,
    flag_option,
    float_option,
    options,
    ref,
    text_option,
)
from payops.connectors.kit.redaction import (
    REDACTED,
    Redaction,
    field_set,
    looks_like_pan,
    mask_first6_last4,
    mask_last4,
    redact,
    redact_result,
    redaction,
)
from payops.connectors.kit.results import (
    check_recorded,
    mismatch,
    not_sent,
    refused,
    result,
    unknown,
)
from payops.connectors.kit.transport import (
    Deadline,
    Fault,
    GatewayClient,
    Reply,
    decode_form,
    decode_json,
    decode_reply,
    decode_xml,
    encode_json,
    guarded,
    jsonable,
    shared_tls_context,
)

__all__ = [
    "REDACTED",
    "Deadline",
    "Fault",
    "GatewayClient",
    "Redaction",
    "Reply",
    "base_url",
    "check_recorded",
    "credential",
    "decode_form",
    "decode_json",
    "decode_reply",
    "decode_xml",
    "encode_json",
    "field_set",
    "flag",
    "form_post",
    "flag_option",
    "float_option",
    "guarded",
    "held_already",
    "jsonable",
    "looks_like_pan",
    "mask_first6_last4",
    "mask_last4",
    "mismatch",
    "not_sent",
    "options",
    "redact",
    "redact_result",
    "redaction",
    "ref",
    "refused",
    "result",
    "shared_tls_context",
    "text_option",
    "unknown",
]
