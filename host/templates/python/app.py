"""{{name}}: a weir plugin.

weir calls ``transform`` once per DynamoDB stream record, with the tenant's ``config`` from
the manifest as JSON text. The record's keys and images are read through weir by JSON
pointer (``image.get_string("/address/city")``, ``get_number``, ``get_bool``, ``to_json``
for a whole value; see wit/transform.wit): only what is read is decoded.

- returning events publishes them (one PutEvents entry each);
- returning ``[]`` filters the record: nothing is sent;
- raising ``Err(reason)`` dead-letters the record with the reason.

Numbers: ``get_number`` gives a DynamoDB number's exact text (up to 38 digits); keep it
as text or ``decimal.Decimal`` to keep every digit, and write integers outside i64 as
strings.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log
from wit_world.imports.types import Change, Event, Level, StreamRecord, Tenant


def transform(record: StreamRecord, tenant: Tenant) -> list:
    # Deletions are not sent on: no events filters the record.
    if record.change == Change.REMOVE:
        return []
    # The item as it now is (a KEYS_ONLY stream carries no image).
    item = record.new_image
    if item is None:
        return []
    ident = item.get_string("/id")
    if ident is None:
        raise Err("the item has no string id")
    name = item.get_string("/name")
    if name is None:
        raise Err("the item has no name")
    # Per-tenant settings come from the manifest's `config` for the tenant.
    config = json.loads(tenant.config)
    destination = config.get("destination")
    if not isinstance(destination, str):
        destination = "webhook"
    if len(name) > 200:
        log.log(Level.WARN, f"a long name: {len(name)} characters")
    # Keys in sorted order, written compactly: the same bytes as the Rust template.
    detail = {
        "change": record.change.name,
        "id": ident,
        "name": name,
        "tenant": tenant.id,
    }
    return [
        Event(
            destination=destination,
            detail_type="ItemChanged",
            detail=json.dumps(detail, separators=(",", ":"), ensure_ascii=False),
            resources=[],
        )
    ]


class Transformer(exports.Transformer):
    """The ``weir:transform/transformer`` export."""

    def transform(self, record: StreamRecord, tenant: Tenant) -> list:
        try:
            return transform(record, tenant)
        finally:
            # The images are weir's for the call: release their handles when it ends.
            for image in (record.keys, record.new_image, record.old_image):
                if image is not None:
                    image.__exit__(None, None, None)
