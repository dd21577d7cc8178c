"""An institution's slug keys its patients' pseudonyms and its stored UIDs: it cannot change."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from core.models import Institution


@pytest.mark.django_db
def test_a_saved_institution_keeps_its_slug_and_may_change_its_name():
    institution = Institution.objects.create(slug="north", name="North Hospital")

    institution.slug = "south"
    with pytest.raises(ValidationError, match="fixed once it exists"):
        institution.save()
    assert Institution.objects.get(pk=institution.pk).slug == "north"

    institution.slug, institution.name = "north", "North General Hospital"
    institution.save()
    assert Institution.objects.get(pk=institution.pk).name == "North General Hospital"


@pytest.mark.django_db
def test_the_admin_shows_the_slug_read_only_once_the_institution_exists(admin_client):
    institution = Institution.objects.create(slug="north", name="North Hospital")

    opts = Institution._meta
    change = admin_client.get(
        reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[institution.pk])
    )
    add = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))

    assert change.status_code == 200 and add.status_code == 200
    assert 'name="slug"' not in change.content.decode()
    assert 'name="slug"' in add.content.decode()
