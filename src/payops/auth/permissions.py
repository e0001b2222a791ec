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

# The dashboard's administration pages (issue 15). Superusers hold them; API keys never do: a key
# is for payment traffic, and an administrator is a person signed in to the dashboard.
ADMIN_PERMISSIONS = frozenset({"admin.users", "admin.gateways", "admin.api_keys", "audit.view"})
