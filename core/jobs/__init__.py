"""The one job lifecycle (issue #13): an abstract `Job` model that every background job kind
inherits (imports, pulled studies, PACS sends, pre-segmentation, exports, training runs), and
the services that move a job through it (services.py)."""
