"""Browser pages (the root urls.py includes these at "")."""

from django.urls import path

from core import pages

urlpatterns = [
    path("login/", pages.LoginView.as_view(), name="login"),
    path("logout/", pages.LogoutView.as_view(), name="logout"),
    path("", pages.home, name="home"),
    path("worklist/", pages.worklist, name="worklist"),
    path("viewer/<int:campaign_id>/<int:scan_id>/", pages.viewer, name="viewer"),
]
