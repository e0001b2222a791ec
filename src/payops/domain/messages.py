"""Every client-visible message, defined once (texts fixed by the Ottu contract and decisions §4)."""

ORDER_NOT_FOUND = "Order number does not exist"
SESSION_NOT_FOUND = "Session does not exist"
NO_ATTEMPTS = "No payment attempts for order {order_no}"
NO_DISCLOSURE_URL = "No disclosure url found for order {order_no}"
NOT_ALLOWED = "Operation is not allowed"
NOT_SUPPORTED = "Operation is not supported by the payment gateway"
EXCEEDS = "Amount exceeds the {kind} amount ({amount} {currency})"
FOREIGN_CURRENCY = "Operations are not available for payments made in a foreign currency"
GATEWAY_UNCONFIRMED = "The payment gateway did not confirm the operation; it will be reconciled"
GATEWAY_DECLINED = "The payment gateway declined the operation"
TRACKING_IN_PROGRESS = "An operation with this Tracking-Key is in progress"
TRACKING_KEY_MISMATCH = "This Tracking-Key was used for a different request"
DONE = "Operation done successfully"
WALLET_UNAVAILABLE = "Refunds to a wallet are not available"
LOOKUP_MISMATCH = "session_id and order_no refer to different transactions"

FIELD_REQUIRED = "This field is required."
FIELD_NULL = "This field may not be null."
FIELD_BLANK = "This field may not be blank."
LIST_EMPTY = "This list may not be empty."
INVALID_CHOICE = '"{value}" is not a valid choice.'
NOT_A_STRING = "Not a valid string."
MAX_LENGTH = "Ensure this field has no more than {n} characters."
INVALID_JSON = "JSON parse error - {error}"
NOT_AN_OBJECT = "Invalid data. Expected a dictionary, but got {kind}."
AMOUNT_BLANK = "A valid number is required."
AMOUNT_NULL = "This field may not be null."
AMOUNT_NOT_STRING = 'Send the amount as a decimal string, e.g. "10.000".'
INVALID_CHARACTERS = "This field may not contain control characters."
URL_WITH_CREDENTIALS = "Enter a URL without a user name or password."
PRIVATE_TARGET = (
    "Enter a URL whose host is a public address; loopback, private, link-local and "
    "metadata addresses are not allowed."
)

AUTH_MISSING = "Authentication credentials were not provided."
AUTH_INVALID_BASIC = "Invalid username/password."
AUTH_INVALID_BASIC_HEADER = "Invalid basic header. Credentials not correctly base64 encoded."
AUTH_BASIC_NO_CREDENTIALS = "Invalid basic header. No credentials provided."
AUTH_BASIC_SPACES = "Invalid basic header. Credentials string should not contain spaces."
AUTH_INVALID_KEY = "Invalid API key."
METRICS_TOKEN_INVALID = "Invalid metrics token."
AUTH_INACTIVE = "User inactive or deleted."
PERMISSION_DENIED = "You do not have permission to perform this action."
NOT_FOUND = "Not found."
METHOD_NOT_ALLOWED = 'Method "{method}" not allowed.'
UNSUPPORTED_MEDIA = 'Unsupported media type "{media_type}" in request.'
TOO_LARGE = "Request body is too large."
BUSY = "The service is busy; try again shortly."
DATABASE_UNAVAILABLE = "The service cannot reach its database; try again shortly."
CROSS_SITE_REFUSED = (
    "CSRF Failed: Origin checking failed - {origin} does not match any trusted origins."
)
CROSS_SITE_NO_ORIGIN = "CSRF Failed: Cross-site request refused."

# Operator review of stuck operations (operations/review.py).
REVIEW_UNKNOWN = "Operation not found."
REVIEW_NOT_IN_REVIEW = "Operation {reference} is {state}, not needs_review: only an operation in review can be resolved"
REVIEW_ALREADY_RESOLVED = "Operation {reference} was already resolved as {outcome} by {actor}"
REVIEW_NOT_OPEN = "Operation {reference} is {state}: only processing, queued or needs_review operations can be rechecked"
REVIEW_IN_FLIGHT = "Operation {reference} is being settled right now; try again shortly"
REVIEW_BAD_OUTCOME = "outcome must be succeeded or failed"
REVIEW_REASON_REQUIRED = "A reason is required"
REVIEW_AGE_RANGE = "Ensure this value is between 0 and {n}."
REVIEW_NO_ANSWER = "The gateway gave no final answer; the operation is unchanged"
REVIEW_CANNOT_ASK = "The gateway of operation {reference} cannot be asked about it; resolve it after checking the gateway's dashboard"
REVIEW_CONTRADICTED = "The gateway now answers {outcome}, contradicting the resolution; nothing was changed and an alert was raised"
REVIEW_RESOLUTION_STANDS = "The gateway answers {outcome}; the resolution stands"
REVIEW_RESOLVED_MESSAGE = "Resolved as {outcome} by an operator"
THROTTLED = "Request was throttled. Expected available in {seconds} seconds."
# Operator review of payment attempts (transactions/attempt_review.py).
ATTEMPT_UNKNOWN = "Payment attempt not found."
ATTEMPT_NOT_IN_REVIEW = "Payment attempt {reference} is {state} and not in review: only an attempt in review can be resolved"
ATTEMPT_NOT_OPEN = (
    "Payment attempt {reference} is {state}: only pending or needs_review attempts can be rechecked"
)
ATTEMPT_ALREADY_RESOLVED = (
    "Payment attempt {reference} was already resolved as {outcome} by {actor}"
)
ATTEMPT_IN_FLIGHT = "Payment attempt {reference} is being asked about right now; try again shortly"
ATTEMPT_CANNOT_ASK = "The gateway of payment attempt {reference} cannot be asked about it; resolve it after checking the gateway's dashboard"
ATTEMPT_BAD_OUTCOME = "outcome must be paid or failed"
ATTEMPT_PAID_STAYS_PAID = "Payment attempt {reference} is paid: resolve it as paid once the gateway's dashboard is checked (refund a duplicate charge there or with a refund operation)"
ATTEMPT_SESSION_CLOSED = (
    "The session of payment attempt {reference} is {state}: it cannot take the payment"
)
ATTEMPT_AMOUNT_BELOW_FEE = "The amount must be at least the fee of the attempt ({fee} {currency})"
ATTEMPT_NO_ANSWER = "The gateway gave no final answer; the attempt is unchanged"
ATTEMPT_RESOLVED_MESSAGE = "Resolved as {outcome} by an operator"
ATTEMPT_REVIEW_NO_ANSWER = "The gateway gave no final answer to {count} automatic inquiries"
ATTEMPT_REVIEW_CANNOT_ASK = (
    "The gateway configuration does not allow inquiries: check the gateway's dashboard"
)

# Form and multipart bodies, unsupported Checkout features (issue 16)
INVALID_JSON_VALUE = "Value must be valid JSON."
ATTACHMENT_UNSUPPORTED = (
    "Attachments are not supported: PayOps stores no files. Send the request without the file."
)
FILE_UNSUPPORTED = "File uploads are not accepted here."
FORM_TOO_DEEP = "Nested more than {n} levels deep."
FEATURE_UNSUPPORTED = "PayOps does not support {field}; send it empty, false or not at all."
TAKES_NO_PAYMENTS = (
    'Payment gateway "{pg_code}" takes no payments through PayOps. Register a payment taken at '
    "it with the import API (payops txn import) and run operations on it."
)
# User accounts (auth/accounts.py; the CLI shows them too).
USER_NOT_FOUND = "No user named {username!r}"
PASSWORD_TOO_SHORT = "The password must have at least {n} characters"
USERNAME_INVALID = "A username has 1 to {n} letters, digits or . @ + - _"
PASSWORD_TOO_LONG = "The password may have at most {n} bytes"
# Checkout sessions and their payment attempts (decisions §13).
PAYMENT_TERMS_LOCKED = (
    "amount, currency_code and pg_codes cannot be changed: a payment attempt on this session "
    "may still succeed."
)
ATTEMPT_AMOUNT_MISMATCH = (
    "The gateway confirmed {confirmed} for an attempt of {asked} {asked_currency}; "
    "an operator must review it."
)
EXTRA_TOO_DEEP = "Ensure this field is nested no more than {n} levels deep."
EXTRA_TOO_LARGE = "Ensure this field is no larger than {n} bytes as JSON."
EXTRA_BAD_NUMBER = (
    "Numbers must be finite, have at most {digits} digits and an exponent within ±{exponent}."
)
DURATION_TOO_LONG = "Ensure this value is at most {days} days."
SERVER_ERROR = "A server error occurred."
# A gateway confirmed a payment on a session that cannot take it any more (already paid by
# another attempt, or canceled): the money must be refunded by an operator.
ATTEMPT_UNAPPLIED_SUCCESS = (
    "The gateway took this payment, but the session was already {state}: refund it at the gateway"
)
