"""The back-office admin (unfold): payments, their records, jobs and users.

Importing the package registers every admin; Django's autodiscover does it.
"""

from . import access, exports, payment, plan, records, system  # noqa: F401
