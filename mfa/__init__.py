"""Staff second factor (TOTP, django-otp): policy, enrolment, the login step, reset."""
