"""HyperPay COPYandPAY (Open Payment Platform, oppwa.com).

`gateway.py` holds the adapter, `codes.py` the result-code groups,
`notifications.py` the AES-256-GCM webhooks, `limits.py` the call budgets of
throttled endpoints and `config.py` the settings' hosts and checks.
"""

from .gateway import HyperPayGateway

__all__ = ["HyperPayGateway"]
