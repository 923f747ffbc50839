"""Payment provider adapters behind one interface (no Django models here)."""
