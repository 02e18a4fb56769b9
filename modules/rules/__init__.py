"""Each mail rule, written once: SPF (``spf``), DKIM keys (``dkim``), DMARC records and
alignment (``dmarc``), MTA-STS and TLS-RPT (``mta_sts``), what each kind of sender
publishes (``senders``) and which records must survive a change (``protection``).
The plan applies them before anything is published, the policy pack at preview, the
checks after apply, so all three agree by construction."""
