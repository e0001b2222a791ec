"""Ottu permission codes (decisions §11)."""

OPERATION_PERMISSIONS = {
    "capture": "payment.capture",
    "refund": "payment.refund",
    "void": "payment.void",
    "cancel": "payment.cancel",
    "expire": "payment.expire",
    "delete": "payment.delete",
    "inquiry": "payment.inquiry",
}
CHECKOUT_PERMISSIONS = ("checkout.create", "checkout.change", "checkout.view")
# PayOps's own: registering a payment taken at a gateway outside PayOps (decisions §9).
IMPORT_PERMISSION = "payment.import"
ALL_PERMISSIONS = (frozenset(OPERATION_PERMISSIONS.values()) | frozenset(CHECKOUT_PERMISSIONS)
                   | {IMPORT_PERMISSION})
