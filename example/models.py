from django.conf import settings
from django.db import models


class Task(models.Model):
    """A to-do item; its table, example_task, is the one the bridge watches."""

    title = models.CharField(max_length=200)
    done = models.BooleanField(default=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="tasks")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.title

    def as_json(self) -> dict[str, object]:
        return {"id": self.pk, "title": self.title, "done": self.done,
                "owner": self.owner_id, "updated_at": self.updated_at.isoformat()}
