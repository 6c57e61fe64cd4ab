"""CRM connectors: ticket events in, turned into access requests, grants and case resolutions.

``connector`` (the interface and the normalised ``TicketEvent``), ``generic`` (callvault's own signed
JSON), ``zendesk`` (Zendesk's ticket event webhooks), ``service`` (applies events through the access
and retention services: idempotent on event id, ordered per ticket), ``models`` (ledger, ticket
state, CRM-user links).
"""
