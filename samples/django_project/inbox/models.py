from django.db import models


class Message(models.Model):
    """A Voxsig message, as stored by inbox/realtime.py."""

    id = models.BigIntegerField(primary_key=True)  # the Voxsig message id: a replayed event updates, never duplicates
    conversation = models.BigIntegerField(db_index=True)
    sender = models.CharField(max_length=200, blank=True)
    text = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now=True)
