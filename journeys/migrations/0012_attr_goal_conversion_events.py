"""Journeys with a goal event count it as a conversion too (conversion_events = [goal_event]),
unless conversion events were set already."""

from django.db import migrations


def goal_to_conversion(apps, schema_editor):
    Journey = apps.get_model("journeys", "Journey")
    for journey in Journey.objects.exclude(goal_event="").only("pk", "goal_event", "conversion_events"):
        if not journey.conversion_events:
            Journey.objects.filter(pk=journey.pk).update(conversion_events=[journey.goal_event])


class Migration(migrations.Migration):
    dependencies = [("journeys", "0011_prefs_topic")]

    operations = [migrations.RunPython(goal_to_conversion, migrations.RunPython.noop)]
