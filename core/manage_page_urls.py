"""Data managers' pages (the root urls.py includes these at "")."""

from django.urls import path

from core import manage_pages

urlpatterns = [
    path("manage/batches/", manage_pages.batches, name="manage-batches"),
    path("manage/batches/<int:batch_id>/", manage_pages.batch_board, name="manage-batch-board"),
    path("manage/import/", manage_pages.import_page, name="manage-import"),
]
