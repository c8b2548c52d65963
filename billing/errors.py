"""The errors billing raises; provider modules translate their SDK's errors into these."""


class PaymentError(Exception):
    """A provider call failed; the message is safe to log and short."""


class PaymentRefused(PaymentError):
    """The provider refused the request itself (a 4xx): asking again will not help."""


class WebhookRejected(Exception):
    """A webhook body failed verification or cannot be read; answered 400, nothing stored."""
