"""Writes for instances: storing pings, mapping licenses, ingest tokens.

Every service function is keyword-only and named ``<entity>_<verb>``; views, tasks and commands
are thin shells around them. Parsing lives in ``instances.parsing`` and never touches the
database. Import from the module that holds a name; this package re-exports nothing.

- ``store``: ``pings_store``, the one way a ping is written (instances found or created,
  licenses resolved, pings inserted, instances moved forward, monthly rows kept).
- ``inputs``: ``PingInput``, one ping ready to store, from a Service Ping or a SaaS export row.
- ``licenses``: one ``License`` row per license key (merging rows of one key), mapping licenses
  and subscriptions, attaching the pings and instances that waited for a mapping.
- ``monthly``: ``MonthlyUsage``, the last ping of each instance's calendar month.
- ``bulk_sql``: raw SQL bulk writes (PostgreSQL COPY, one-``executemany`` UPDATEs).
- ``files``: payload files (the bulk loader, its process pool, the upload page) and the SaaS
  namespace export import.
- ``rejections``: rejected payloads and the companion ``/usage_ping_*`` reports kept for ops.
- ``tokens``: ingest tokens for the ping endpoints.
- ``storable``: values fitted to their columns (text clipped, raw payloads compressed).
"""
