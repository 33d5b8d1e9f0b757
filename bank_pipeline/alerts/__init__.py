"""Alerts to the person when the bank or the pipeline needs them, one concern per module:

- `channels`: the channels (Apprise URLs from BANK_PIPELINE_ALERT_URLS), validated, redacted, sent;
- `outbox`: one alert per cause in the `alerts` table, delivered per channel, retried later;
- `causes`: what deserves an alert (consent ending, a failed run) and the cause that dedupes it.

Dagster drives them from its sensors (`bank_pipeline.orchestration.alerting`).
"""
