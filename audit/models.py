"""One append-only table: an entry per staff act, each hashed over the one before."""

from __future__ import annotations

from django.db import models


class AuditEntry(models.Model):
    """A staff act: who, from where, when, what, on which object, and why.

    Staff identity and object references only: never a customer's e-mail, a
    payment's details, a secret or a password hash. The actor is kept as text
    (username and id), so deleting a user leaves the log untouched.

    `hash` is SHA-256 over the entry's content and `prev_hash`, the hash of the
    entry before it (`seq` order); see audit.chain.
    """

    seq = models.PositiveBigIntegerField(unique=True, editable=False)
    created_at = models.DateTimeField(editable=False)
    actor_username = models.CharField(max_length=150, blank=True, editable=False)
    actor_user_id = models.BigIntegerField(null=True, blank=True, editable=False)
    ip = models.GenericIPAddressField(null=True, blank=True, editable=False)
    action = models.CharField(max_length=64, editable=False)
    target_model = models.CharField(max_length=100, blank=True, editable=False)
    target_id = models.CharField(max_length=64, blank=True, editable=False)
    reason = models.TextField(blank=True, editable=False)
    detail = models.JSONField(default=dict, blank=True, editable=False)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, unique=True, editable=False)

    class Meta:
        ordering = ("-seq",)
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        indexes = [
            models.Index(fields=["created_at"], name="audit_created_idx"),
            models.Index(fields=["actor_username", "seq"], name="audit_actor_idx"),
            models.Index(fields=["action", "seq"], name="audit_action_idx"),
            models.Index(fields=["target_model", "target_id"], name="audit_target_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor_display}"

    @property
    def actor_display(self) -> str:
        """Name the actor as "username (#id)", or "system"."""
        if not self.actor_username:
            return "system"
        if self.actor_user_id is None:
            return self.actor_username
        return f"{self.actor_username} (#{self.actor_user_id})"

    @property
    def target_display(self) -> str:
        if not self.target_model:
            return ""
        return f"{self.target_model} {self.target_id}".strip()
