"""HTTP views: the public checkout API and pages, webhooks, the sandbox page."""
