"""Network International N-Genius Online connector (capture, refund, void, inquiry)."""
