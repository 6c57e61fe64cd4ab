"""Internal access requests, approvals, time-boxed grants and employees' consents (B6, B9, A6)."""
