"""`{% workflow_links user as links %}`: the QC and management pages a user's roles open."""

from __future__ import annotations

from django import template

from core.manage_pages import workflow_links as links_for

register = template.Library()


@register.simple_tag
def workflow_links(user) -> list[dict]:
    return links_for(user)
