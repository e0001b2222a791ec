"""MyFatoorah (API v2): refund and inquiry, plus capture and release (void) on accounts with
MyFatoorah's Authorize-Capture feature. See ``connector.py`` for the protocol summary."""
