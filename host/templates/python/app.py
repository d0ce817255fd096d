"""{{name}}: a weir plugin.

weir calls ``transform`` once per DynamoDB stream record, with the record's images as JSON
text and the tenant's ``config`` from the manifest as JSON text.

- returning events publishes them (one PutEvents entry each);
- returning ``[]`` filters the record: nothing is sent;
- raising ``Err(reason)`` dead-letters the record with the reason.

Numbers: images hold DynamoDB numbers of up to 38 digits. Read them with
``json.loads(text, parse_int=str, parse_float=str)`` (or ``decimal.Decimal``) to keep
every digit, and write integers outside i64 as strings.
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
    if record.new_image is None:
        return []
    item = json.loads(record.new_image, parse_int=str, parse_float=str)
    if not isinstance(item.get("id"), str):
        raise Err("the item has no string id")
    if not isinstance(item.get("name"), str):
        raise Err("the item has no name")
    # Per-tenant settings come from the manifest's `config` for the tenant.
    config = json.loads(tenant.config)
    destination = config.get("destination")
    if not isinstance(destination, str):
        destination = "webhook"
    if len(item["name"]) > 200:
        log.log(Level.WARN, f"a long name: {len(item['name'])} characters")
    # Keys in sorted order, written compactly: the same bytes as the Rust template.
    detail = {
        "change": record.change.name,
        "id": item["id"],
        "name": item["name"],
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
        return transform(record, tenant)
