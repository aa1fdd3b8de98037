"""AWS access, one module per concern (imports nothing from the stages or flows):

- ``clients``: ``make_clients`` (the one client factory), ``account_id``, ``partition_of``
- ``errors``: transient/permanent classification, ``StageError``, one-line messages with a hint
- ``retry``: the Prefect wrappers ``aws_task`` / ``wait_task`` and ``Backoff`` for long waits
- ``tags``: the tags on everything the pipeline creates
- ``redact``: account ids out of ARNs; ``logs``: the run logger and log redaction
- ``s3uri``: split and join ``s3://bucket/key`` URIs
"""
