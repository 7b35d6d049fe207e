"""A broadcast's goal becomes its conversion settings: goal_event -> conversion_events
([goal_event]) and goal_window_hours -> conversion_window_hours, then the old fields go."""

from django.db import migrations


def goal_to_conversion(apps, schema_editor):
    Broadcast = apps.get_model("campaigns", "Broadcast")
    for broadcast in Broadcast.objects.all().only("pk", "goal_event", "goal_window_hours"):
        values = {"conversion_window_hours": broadcast.goal_window_hours}
        if broadcast.goal_event:
            values["conversion_events"] = [broadcast.goal_event]
        Broadcast.objects.filter(pk=broadcast.pk).update(**values)


def conversion_to_goal(apps, schema_editor):
    Broadcast = apps.get_model("campaigns", "Broadcast")
    for broadcast in Broadcast.objects.all().only(
        "pk", "conversion_events", "conversion_window_hours"
    ):
        events = broadcast.conversion_events or []
        Broadcast.objects.filter(pk=broadcast.pk).update(
            goal_event=events[0] if events else "",
            goal_window_hours=broadcast.conversion_window_hours,
        )


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0006_prefs_topic")]

    operations = [
        migrations.RunPython(goal_to_conversion, conversion_to_goal),
        migrations.RemoveField(model_name="broadcast", name="goal_event"),
        migrations.RemoveField(model_name="broadcast", name="goal_window_hours"),
    ]
