from django.db import migrations, models


def method_of_existing_plans(apps, schema_editor):
    """Plans made before the patient-level fallback split by institution. Three or more
    institutions keep that; with fewer there was no usable test split, so their new patients
    are split by patient from now on (cases already given keep their split)."""
    SplitPlan = apps.get_model("modelassist", "SplitPlan")
    InstitutionSplit = apps.get_model("modelassist", "InstitutionSplit")
    ExportCase = apps.get_model("modelassist", "ExportCase")
    for plan in SplitPlan.objects.all():
        institutions = InstitutionSplit.objects.filter(campaign_id=plan.campaign_id).count()
        if institutions >= 3:
            plan.method = "institution"
        elif ExportCase.objects.filter(campaign_id=plan.campaign_id).exists():
            plan.method = "patient"
        else:
            continue
        plan.save(update_fields=["method"])


class Migration(migrations.Migration):
    dependencies = [
        ("modelassist", "0002_retrain_schedule"),
    ]

    operations = [
        migrations.AddField(
            model_name="splitplan",
            name="method",
            field=models.CharField(
                blank=True,
                choices=[("institution", "By institution"), ("patient", "By patient")],
                max_length=12,
            ),
        ),
        migrations.RunPython(method_of_existing_plans, migrations.RunPython.noop),
    ]
