"""`payops secret …`: the key that encrypts stored secrets (gateway credentials, the webhook
HMAC key)."""

from __future__ import annotations

import typer

from payops.cli.common import console, fail, run

app = typer.Typer(help="The secret key that encrypts stored secrets.", no_args_is_help=True)


def check_secret_key() -> None:
    """Stop with one line when PAYOPS_SECRET_KEY does not open the stored secrets."""
    from payops import stored_secrets
    from payops.gateways.crypto import SecretKeyMismatch

    try:
        run(stored_secrets.startup)
    except SecretKeyMismatch as exc:
        fail(str(exc))
    except ValueError as exc:  # not a Fernet key at all
        fail(
            f"PAYOPS_SECRET_KEY is not a valid Fernet key ({exc}); make one with "
            "`payops secret new-key`"
        )


@app.command("rotate")
def secret_rotate() -> None:
    """Re-encrypt every stored secret under the first key of PAYOPS_SECRET_KEY."""
    from payops import stored_secrets
    from payops.gateways.crypto import SecretKeyMismatch

    try:
        summary = run(stored_secrets.rotate)
    except SecretKeyMismatch as exc:
        fail(str(exc))
    console.print(
        f"re-encrypted {summary.gateway_secrets} gateway secret(s) and "
        f"{summary.settings} setting(s) under the first key; older keys can now be "
        "removed from PAYOPS_SECRET_KEY"
    )


@app.command("new-key")
def secret_new_key() -> None:
    """Print a new Fernet key (put it first in PAYOPS_SECRET_KEY, then run `secret rotate`)."""
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())
