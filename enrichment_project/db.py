"""Database helpers shared by the apps."""

from collections.abc import Sequence

from django.db import connection
from django.db.models import Model


def rows_update(objects: Sequence[Model], field_names: Sequence[str]) -> None:
    """Writes `field_names` of each object by primary key: one UPDATE per row, sent as one
    batch (psycopg pipelines executemany). bulk_update's CASE expressions cost the worker more
    CPU than the statements cost the database."""
    if not objects:
        return
    meta = objects[0]._meta
    fields = [meta.get_field(name) for name in field_names]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"
    rows = [
        [field.get_db_prep_save(getattr(obj, field.attname), connection) for field in fields]
        + [meta.pk.get_db_prep_save(obj.pk, connection)]
        for obj in objects
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
