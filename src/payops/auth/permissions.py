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
# PayOps's own: settling an operation in needs_review by an operator's decision (decisions §13).
RESOLVE_PERMISSION = "payment.resolve"
ALL_PERMISSIONS = (
    frozenset(OPERATION_PERMISSIONS.values())
    | frozenset(CHECKOUT_PERMISSIONS)
    | {IMPORT_PERMISSION, RESOLVE_PERMISSION}
)
# What an API key holds, listed explicitly: the merchant-integration permissions (decisions §11),
# never an operator's decision or a dashboard code (a key sits in a merchant's server; resolving
# needs a named person).
API_KEY_PERMISSIONS = (
    frozenset(OPERATION_PERMISSIONS.values())
    | frozenset(CHECKOUT_PERMISSIONS)
    | {IMPORT_PERMISSION}
)

# The dashboard's administration pages (issue 15). Superusers hold them; API keys never do: a key
# is for payment traffic, and an administrator is a person signed in to the dashboard.
ADMIN_PERMISSIONS = frozenset({"admin.users", "admin.gateways", "admin.api_keys", "audit.view"})
# Every code a user can be given (CLI `user create/grant`, the dashboard's users page).
GRANTABLE_PERMISSIONS = ALL_PERMISSIONS | ADMIN_PERMISSIONS
