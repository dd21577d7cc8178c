"""Federation pages (the root urls.py includes these at "")."""

from django.urls import path

from federation import pages

urlpatterns = [
    path("manage/federation/", pages.federation, name="manage-federation"),
]
