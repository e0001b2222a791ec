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
ALL_PERMISSIONS = frozenset(OPERATION_PERMISSIONS.values()) | frozenset(CHECKOUT_PERMISSIONS)
