"""The page layer's shared list kit: django-tables2 columns and paginator, django-filter filters,
the list view whose CSM filter defaults to "me", and the query expressions their selectors use.

Shared by the dashboard and the cross-account reports; nothing in it knows either page.
"""
