"""Every secret PayOps stores encrypted, in one place: gateway credentials, gateway webhook
secrets and the merchant's secret settings (the webhook HMAC key).

- ``check_key``: at start-up, prove the configured secret key opens every stored secret, so a
  wrong key stops the server with one clear line instead of surfacing later as gateway timeouts.
- ``protect_plaintext``: encrypt secret settings that older versions stored in plaintext.
- ``rotate``: re-encrypt every stored secret under the first configured key (``payops secret
  rotate``), after which older keys can be dropped from ``PAYOPS_SECRET_KEY``.
"""

from __future__ import annotations

from dataclasses import dataclass

from payops.context import AppContext
from payops.gateways import repository as gateways
from payops.gateways.crypto import SecretBox, SecretKeyMismatch
from payops.webhooks.outbox import secret_box, secret_setting_rows

WRONG_KEY = (
    "PAYOPS_SECRET_KEY does not decrypt the stored {what}; start with the key they were "
    "encrypted with (several keys may be given, separated by commas)"
)


@dataclass
class RotationSummary:
    gateway_secrets: int = 0
    settings: int = 0


def _opens(box: SecretBox, token: str) -> bool:
    try:
        box.rotate(token)
    except SecretKeyMismatch:
        return False
    return True


async def check_key(ctx: AppContext) -> None:
    """Raise SecretKeyMismatch (one line, naming the first secret that fails) unless the
    configured key opens every stored secret."""
    async with ctx.db.read() as session:
        box = secret_box(session)
        for config in await gateways.all_by_id(session):
            for token, what in (
                (config.credentials_encrypted, "credentials"),
                (config.webhook_secret_encrypted, "webhook secret"),
            ):
                if token and not _opens(box, token):
                    raise SecretKeyMismatch(
                        WRONG_KEY.format(what=f"{what} of gateway {config.pg_code!r}")
                    )
        for row in await secret_setting_rows(session):
            if box.is_sealed_text(row.value) and not _opens(box, row.value):
                raise SecretKeyMismatch(WRONG_KEY.format(what=f"setting {row.key!r}"))


async def protect_plaintext(ctx: AppContext) -> int:
    """Encrypt secret settings still stored in plaintext; returns how many were."""
    async with ctx.db.write() as session:
        box = secret_box(session)
        rows = await secret_setting_rows(session, for_update=True)
        count = 0
        for row in rows:
            if row.value and not box.is_sealed_text(row.value):
                row.value = box.seal_text(row.value)
                count += 1
        return count


async def startup(ctx: AppContext) -> None:
    await check_key(ctx)
    await protect_plaintext(ctx)


async def rotate(ctx: AppContext) -> RotationSummary:
    """Re-encrypt every stored secret under the first configured key, in one transaction."""
    summary = RotationSummary()
    await check_key(ctx)  # never re-encrypt anything before every secret is known to open
    await protect_plaintext(ctx)
    async with ctx.db.write() as session:
        box = secret_box(session)
        for config in await gateways.all_by_id(session, for_update=True):
            for column in ("credentials_encrypted", "webhook_secret_encrypted"):
                token = getattr(config, column)
                if token:
                    setattr(config, column, box.rotate(token))
                    summary.gateway_secrets += 1
        for row in await secret_setting_rows(session, for_update=True):
            if row.value:
                row.value = box.rotate(row.value)
                summary.settings += 1
    return summary
