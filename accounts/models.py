"""The accounts app's one table: per-user token generations (see ``accounts.auth``).

Keyed by user name, not a foreign key, so that a row outlives its user: a user deleted and
created again under the same name must not make the old user's tokens valid again.
"""

from __future__ import annotations

from django.db import models


class TokenGeneration(models.Model):
    username = models.CharField(max_length=150, unique=True)
    generation = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.username}@{self.generation}"
