"""Request fields every app's API shares."""

from __future__ import annotations

from rest_framework import serializers

# A row id the databases can compare: past 2**63 - 1 SQLite and psycopg raise instead of
# finding nothing, so such an id is a 400 here rather than a server error.
ROW_ID_MAX = 2**63 - 1
# A voxel index or a count no scan comes near; past it numpy and the databases overflow.
INDEX_MAX = 2**31 - 1


def row_id_field(**kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=1, max_value=ROW_ID_MAX, **kwargs)


def index_field(**kwargs) -> serializers.IntegerField:
    kwargs.setdefault("min_value", -INDEX_MAX)
    return serializers.IntegerField(max_value=INDEX_MAX, **kwargs)
