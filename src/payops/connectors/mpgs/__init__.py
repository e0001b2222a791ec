"""Mastercard Payment Gateway Services (MPGS, "Mastercard Gateway") connector.

REST-JSON API: ``{host}/api/rest/version/{N}/merchant/{merchantId}/order/{orderId}/transaction/{txnId}``,
HTTP Basic auth as ``merchant.{merchantId}`` with the API password. Follow-up operations (capture,
refund, void) are new transactions created with ``PUT`` under a caller-chosen transaction id, which
is PayOps's reference number: the gateway's own idempotency key.
"""
