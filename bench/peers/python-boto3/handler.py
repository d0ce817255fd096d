"""A DynamoDB Streams -> EventBridge Lambda handler of the kind users write today.

It is the `python-boto3` contender of weir's benchmark: boto3's `TypeDeserializer`
turns each image into Python values, plain Python maps a customer item to a Salesforce
Account upsert (the same mapping as weir's `salesforce-account` plugin), wraps it in
weir's metadata envelope and sends the entries with `put_events`, 10 per request.

Configuration is the JSON the benchmark driver writes:
`{"event_bus", "source", "plugin", "tenant_attribute", "tenants": {id: config}}`.
In Lambda it is read from the file named by `WEIR_PEER_CONFIG` and the client is
`boto3.client("events")`; the benchmark calls `configure()` with a collector instead,
so what is measured is the mapping, not the network.

The output is byte-identical to weir's where the input is what DynamoDB emits: numbers
keep every digit of their text (written positionally, never as `1E-36`), integers
outside i64 become strings, payload keys are sorted, strings are escaped as serde_json
escapes them.
"""

import hashlib
import json
import math
import os
import re
import time
from decimal import Decimal
from json.encoder import encode_basestring
from urllib.parse import quote

from boto3.dynamodb.types import TypeDeserializer

# EventBridge takes at most 10 entries per PutEvents request.
PUT_EVENTS_BATCH = 10

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1

# Account fields and the item attributes they come from, as the plugin has them.
FIELDS = (
    ("AnnualRevenue", "/lifetimeValue"),
    ("BillingCity", "/address/city"),
    ("BillingCountry", "/address/country"),
    ("BillingPostalCode", "/address/zip"),
    ("BillingStreet", "/address/street"),
    ("Name", "/name"),
    ("NumberOfEmployees", "/employees"),
    ("Phone", "/phone"),
    ("Website", "/website"),
)

_config = None
_client = None


class StreamDeserializer(TypeDeserializer):
    """boto3's deserializer with the two changes a stream handler needs.

    Lambda delivers `B` values as base64 text, which boto3's `Binary` refuses, so they
    stay text (as weir passes them on). Sets keep their stream order as lists: a Python
    `set` would print in a different order on every run.
    """

    def _deserialize_b(self, value):
        return value

    def _deserialize_ss(self, value):
        return list(value)

    def _deserialize_ns(self, value):
        return [self._deserialize_n(v) for v in value]

    def _deserialize_bs(self, value):
        return list(value)


_deserializer = StreamDeserializer()


def _image(attributes):
    deserialize = _deserializer.deserialize
    return {name: deserialize(value) for name, value in attributes.items()}


class RecordError(Exception):
    """A record that cannot be mapped; it is dead-lettered with this message."""


def configure(config, client):
    """Sets the configuration and the PutEvents client (the benchmark's collector)."""
    global _config, _client
    _config = _Config(config)
    _client = client


class _Config:
    def __init__(self, raw):
        self.event_bus = raw["event_bus"]
        self.source = raw["source"]
        self.plugin = raw["plugin"]
        self.tenant_attribute = raw["tenant_attribute"]
        self.tenants = {tid: _TenantConfig(c) for tid, c in raw["tenants"].items()}


class _TenantConfig:
    def __init__(self, config):
        def setting(key, default):
            v = config.get(key)
            return v if isinstance(v, str) else default

        self.field = setting("external_id_field", None)
        self.id_pointer = setting("external_id", "/customerId")
        self.id_tokens = _pointer_tokens(self.id_pointer)
        self.api_version = setting("api_version", "v61.0")
        self.skip_removes = setting("on_remove", "skip") == "skip"


def _load_defaults():
    global _config, _client
    if _config is None:
        with open(os.environ["WEIR_PEER_CONFIG"], encoding="utf-8") as f:
            _config = _Config(json.load(f))
    if _client is None:
        import boto3

        _client = boto3.client("events")


def handler(event, context):
    """Maps a batch of stream records and publishes the entries, 10 per PutEvents call."""
    _load_defaults()
    config = _config
    entries = []
    filtered = 0
    dead_letters = []
    for record in event["Records"]:
        try:
            entry = _map_record(record, config)
        except (
            RecordError,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
            ArithmeticError,
        ) as e:
            where = record.get("eventID") if isinstance(record, dict) else None
            dead_letters.append({"eventID": where, "error": f"{type(e).__name__}: {e}"})
            continue
        if entry is None:
            filtered += 1
        else:
            entries.append(entry)
    failed = 0
    for i in range(0, len(entries), PUT_EVENTS_BATCH):
        response = _client.put_events(Entries=entries[i : i + PUT_EVENTS_BATCH])
        failed += response.get("FailedEntryCount", 0)
    return {
        "entries": len(entries),
        "failedEntries": failed,
        "filtered": filtered,
        "deadLetters": dead_letters,
    }


def _map_record(record, config):
    """The PutEvents entry for one record, or None when it is filtered."""
    event_id = record["eventID"]
    if not isinstance(event_id, str):
        raise RecordError("eventID: not a string")
    change = record["eventName"]
    if change not in ("INSERT", "MODIFY", "REMOVE"):
        raise RecordError(f"eventName: unknown event name {change!r}")
    table = _table_from_arn(record["eventSourceARN"])
    ddb = record["dynamodb"]
    sequence_number = ddb["SequenceNumber"]
    if not (
        isinstance(sequence_number, str)
        and 0 < len(sequence_number) <= 40
        and sequence_number.isascii()
        and sequence_number.isdigit()
    ):
        raise RecordError("dynamodb.SequenceNumber: not a decimal string of 1 to 40 digits")
    created = _creation_time(ddb.get("ApproximateCreationDateTime"))
    keys = raw_keys = ddb["Keys"]
    new_raw = ddb.get("NewImage")
    old_raw = ddb.get("OldImage")

    tenant_id = _tenant_of(config.tenant_attribute, new_raw, old_raw, keys)
    tenant = config.tenants.get(tenant_id) if tenant_id is not None else None
    if tenant is None:
        tenant = config.tenants.get("default")
        if tenant is None:
            return None
        if tenant_id is None:
            tenant_id = "default"

    keys = _image(keys)
    new_image = _image(new_raw) if new_raw is not None else None
    old_image = _image(old_raw) if old_raw is not None else None

    if tenant.field is None:
        raise RecordError("config.external_id_field must name the Account's external id field")
    remove = change == "REMOVE"
    if remove and tenant.skip_removes:
        return None
    item = old_image if remove else new_image
    if item is None:
        item = keys
    external_id = _external_id(item, tenant.id_tokens)
    if external_id is None:
        external_id = _external_id(keys, tenant.id_tokens)
    if external_id is None:
        raise RecordError(f"the item has no external id at {tenant.id_pointer}")
    path = (
        f"/services/data/{tenant.api_version}/sobjects/Account/{tenant.field}/"
        + quote(external_id, safe="-._~")
    )
    ids = encode_basestring(external_id), encode_basestring(tenant.field), encode_basestring(path)
    if remove:
        detail_type = "SalesforceAccountDelete"
        payload = '{"externalId":%s,"externalIdField":%s,"path":%s}' % ids
    else:
        body = []
        has_name = False
        for account_field, tokens in _FIELD_TOKENS:
            value = _get(item, tokens)
            if value is not None:
                body.append(f'"{account_field}":{_json(value)}')
                has_name = has_name or account_field == "Name"
        if not has_name:
            raise RecordError("the item has no name; Salesforce requires Account.Name")
        detail_type = "SalesforceAccountUpsert"
        payload = '{"body":{%s},"externalId":%s,"externalIdField":%s,"path":%s}' % (
            ",".join(body),
            *ids,
        )
    metadata = (
        '{"metadata":{"id":"%s","tenant":%s,"destination":"salesforce","plugin":%s,'
        '"table":%s,"eventID":%s,"eventName":"%s","sequenceNumber":%s,'
        '"item":%s,"position":"%s","approximateCreationTime":%s},"payload":'
        % (
            _event_id(event_id, 0),
            _metadata_string(tenant_id),
            _metadata_string(config.plugin),
            _metadata_string(table),
            _metadata_string(event_id),
            change,
            _metadata_string(sequence_number),
            _metadata_string(_item_key(raw_keys)),
            sequence_number.rjust(40, "0"),
            created,
        )
    )
    return {
        "Source": config.source,
        "DetailType": detail_type,
        "Detail": metadata + payload + "}",
        "EventBusName": config.event_bus,
        "Resources": [],
    }


def _tenant_of(attribute, *images):
    """The tenant id: the attribute's S (or N) text from the new image, old image or keys."""
    for image in images:
        if image is None:
            continue
        value = image.get(attribute)
        if not isinstance(value, dict):
            continue
        text = value.get("S", value.get("N"))
        if isinstance(text, str):
            return text or None
    return None


_TABLE_ARN = re.compile(r"arn:[^:]*:dynamodb:[^:]*:[^:]*:table/([^/]+)")


def _table_from_arn(arn):
    m = _TABLE_ARN.match(arn)
    if m is None:
        raise RecordError(f"eventSourceARN: {arn!r} is not a DynamoDB table or stream ARN")
    return m.group(1)


def _pointer_tokens(pointer):
    if not pointer.startswith("/"):
        return None
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/"))


_FIELD_TOKENS = tuple((field, _pointer_tokens(p)) for field, p in FIELDS)


def _get(item, tokens):
    """The value at a JSON Pointer (given as its tokens), or None."""
    if tokens is None:
        return None
    value = item
    for token in tokens:
        if isinstance(value, dict):
            value = value.get(token)
            if value is None:
                return None
        elif isinstance(value, list):
            if not (token.isascii() and token.isdigit()) or (token[0] == "0" and len(token) > 1):
                return None
            i = int(token)
            if i >= len(value):
                return None
            value = value[i]
        else:
            return None
    return value


def _external_id(item, tokens):
    value = _get(item, tokens)
    if isinstance(value, str):
        return value or None
    if isinstance(value, Decimal):
        return _number_text(value)
    return None


def _number_text(d):
    if not d.is_finite():
        raise RecordError(f"{d} is not a number")
    # str() would write small numbers as 1E-36; 'f' keeps every digit positionally.
    return format(d, "f")


def _json(value):
    """serde_json's compact text for a deserialized value, keys sorted, with integers
    outside i64 as strings (EventBridge refuses them as numbers)."""
    if isinstance(value, str):
        return encode_basestring(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, Decimal):
        text = _number_text(value)
        if "." not in text and len(text) > 18 and not (I64_MIN <= int(text) <= I64_MAX):
            return '"' + text + '"'
        return text
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(encode_basestring(k) + ":" + _json(value[k]) for k in sorted(value))
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(_json(v) for v in value) + "]"
    raise RecordError(f"cannot write {type(value).__name__} as JSON")


_SHORT_ESCAPES_WEIR_SPELLS_OUT = re.compile("[\b\f]")
_ESCAPE = re.compile(r"\\(.)")
_WEIR_ESCAPES = {"b": "\\u0008", "f": "\\u000c"}


def _item_key(raw_keys):
    """The item's key as weir's metadata gives it: the typed key attributes in name order."""
    return "{%s}" % ",".join(
        "%s:%s" % (json.dumps(n), json.dumps(raw_keys[n], separators=(",", ":"), ensure_ascii=False))
        for n in sorted(raw_keys)
    )


def _metadata_string(s):
    """A JSON string as weir's envelope writes it: like serde_json, but \\b and \\f as \\u00XX."""
    text = encode_basestring(s)
    if _SHORT_ESCAPES_WEIR_SPELLS_OUT.search(s):
        text = _ESCAPE.sub(lambda m: _WEIR_ESCAPES.get(m.group(1), m.group(0)), text)
    return text


def _event_id(stream_event_id, index):
    h = hashlib.sha256(f"{stream_event_id}/{index}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _creation_time(seconds):
    if seconds is None:
        return "null"
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise RecordError(f"dynamodb.ApproximateCreationDateTime: {seconds!r} is not a time")
    if isinstance(seconds, int) and seconds >= 0:
        ms = seconds * 1000
    elif isinstance(seconds, float) and 0.0 <= seconds < 1.0e16:
        scaled = seconds * 1000.0
        ms = math.floor(scaled)
        if scaled - ms >= 0.5:  # Rust's round(): halves away from zero
            ms += 1
    else:
        raise RecordError(f"dynamodb.ApproximateCreationDateTime: {seconds!r} is not a time")
    t = time.gmtime(ms // 1000)
    return '"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ"' % (
        t.tm_year,
        t.tm_mon,
        t.tm_mday,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
        ms % 1000,
    )
