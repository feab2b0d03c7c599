"""Generated books of business: the demo book and the benchmark's load book.

- ``shapes``: what both books share, pure data: the company, subscription, instance and login
  specs, the naming, identity and label rules, the subscription, instance and namespace builders,
  the version timeline and the usage profile behind every weekly figure.
- ``payloads``: Service Ping payloads in GitLab's own format, version by version.
- ``demo``: the 48-account demo book that covers every case the product shows (pure data);
  ``seed`` stores it through the real CRM import, ping ingest and labeling paths
  (``manage.py seed_demo``, ``make demo``; re-runnable).
- ``loadgen``: a book of any size with the demo's variety, and its ping and monthly-usage rows
  (pure data); ``bulk_load`` writes it into an emptied database with COPY
  (``manage.py generate_load_data``, which ``make bench`` runs through ``bench/dataset.py``).

The tests build their sample pings with ``payloads`` too.
"""
