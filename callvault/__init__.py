"""callvault: call recording that enforces a written policy."""
