from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="Message",
            fields=[
                ("id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("conversation", models.BigIntegerField(db_index=True)),
                ("sender", models.CharField(blank=True, max_length=200)),
                ("text", models.TextField(blank=True)),
                ("received_at", models.DateTimeField(auto_now=True)),
            ],
        ),
    ]
