from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from core import models


class MembershipInline(admin.TabularInline):
    model = models.Membership
    extra = 0


@admin.register(models.User)
class CurateUserAdmin(UserAdmin):
    inlines = [MembershipInline]


class CampaignMemberInline(admin.TabularInline):
    model = models.CampaignMember
    extra = 0


@admin.register(models.Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "institution", "batch_size", "spot_check_share"]
    inlines = [CampaignMemberInline]


@admin.register(models.Institution)
class InstitutionAdmin(admin.ModelAdmin):
    list_display = ["slug", "name"]

    def get_readonly_fields(self, request, obj=None):
        # Fixed once the institution exists: its patients' pseudonyms derive from it (Institution.save).
        return ["slug"] if obj is not None else []


@admin.register(models.AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "actor_label",
        "action",
        "object_type",
        "object_id",
        "from_state",
        "to_state",
    ]
    list_filter = ["action"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
