"""Maps a customer item to a Salesforce Account upsert by external id.

The Python build of plugins/salesforce-account (Rust), producing byte-identical events::

    config = { external_id_field = "Weir_Customer_Id__c", external_id = "/customerId",
               api_version = "v61.0", on_remove = "skip" }

The event is for the ``salesforce`` destination: an API destination that sends
``PATCH /services/data/{api_version}/sobjects/Account/{field}/{id}`` with ``body``.
``on_remove = "delete"`` turns REMOVEs into ``SalesforceAccountDelete`` events instead of
skipping them. Integers outside i64 are sent as strings with every digit.

The item's images are ``weir:transform@0.2.0`` image resources: each field is read through
the host by JSON pointer, as plain JSON text of that one value, so attributes the mapping
does not read are never decoded or copied. Numbers carry up to 38 significant digits, so
values (and the tenant's config) are read with ``json.JSONDecoder`` hooks that keep each
number's text (``JsonNumber``), never a float, and events are written the way the Rust
SDK's serde_json writes them: compact, object keys sorted by code point, only ``"``,
``\\`` and control characters escaped, numbers with every digit.
"""

import json
import json.encoder

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports.types import Change, Event, Image, StreamRecord, Tenant


class JsonNumber:
    """A JSON number exactly as written in the input."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def _float_text(text: str) -> JsonNumber:
    """serde_json (arbitrary_precision) keeps a number's digits but writes its exponent as
    ``e`` with a sign: ``1E5`` and ``1e5`` become ``1e+5``. Numbers are held in that form."""
    e = text.find("e")
    if e < 0:
        e = text.find("E")
    if e >= 0:
        sign = "" if text[e + 1 : e + 2] in ("+", "-") else "+"
        text = text[:e] + "e" + sign + text[e + 1 :]
    return JsonNumber(text)


def _number(text: str) -> JsonNumber:
    """A JSON number's text, held as the decoder below holds it."""
    if "." in text or "e" in text or "E" in text:
        return _float_text(text)
    return JsonNumber(text)


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


# One decoder, made once: json.loads with hooks would build a new one per call.
_DECODER = json.JSONDecoder(
    parse_int=JsonNumber, parse_float=_float_text, parse_constant=_no_constants
)


def parse_json(text: str):
    """One JSON value, numbers kept as JsonNumber; raises ValueError on bad input."""
    return _DECODER.decode(text)


# Escapes `"`, `\` and control characters only (\b \f \n \r \t short, the rest \u00xx),
# exactly as serde_json does; everything else is written raw.
_write_str = json.encoder.encode_basestring


def _write(v, out: list) -> None:
    if isinstance(v, str):
        out.append(_write_str(v))
    elif isinstance(v, JsonNumber):
        out.append(v.text)
    elif v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, list):
        out.append("[")
        for i, x in enumerate(v):
            if i:
                out.append(",")
            _write(x, out)
        out.append("]")
    elif isinstance(v, dict):
        out.append("{")
        # str ordering is by code point: the order of Rust's BTreeMap<String, _>.
        for i, k in enumerate(sorted(v)):
            if i:
                out.append(",")
            out.append(_write_str(k))
            out.append(":")
            _write(v[k], out)
        out.append("}")
    else:
        raise TypeError(f"cannot write {type(v).__name__} as JSON")


def to_json(v) -> str:
    out: list = []
    _write(v, out)
    return "".join(out)


def image_get(image: Image, pointer: str):
    """The value at RFC 6901 ``pointer`` in ``image`` (a host image resource), or ``_ABSENT``
    (as Image::get): one host call, which answers with that value's plain JSON."""
    text = image.to_json(pointer)
    if text is None:
        return _ABSENT
    # Most values are a plain string or a number: taken from the text without a parser.
    first = text[:1]
    if first == '"' and "\\" not in text:
        return text[1:-1]
    if first == "-" or first.isdigit():
        return _number(text)
    return parse_json(text)


_ABSENT = object()
_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1


def eventbridge_safe(v):
    """``v`` with every integer outside i64 written as a string of all its digits."""
    if isinstance(v, JsonNumber):
        t = v.text
        if "." not in t and "e" not in t and "E" not in t and not _I64_MIN <= int(t) <= _I64_MAX:
            return t
        return v
    if isinstance(v, list):
        return [eventbridge_safe(x) for x in v]
    if isinstance(v, dict):
        return {k: eventbridge_safe(x) for k, x in v.items()}
    return v


def config_str(config, key: str):
    if not isinstance(config, dict):
        return None
    v = config.get(key)
    return v if isinstance(v, str) else None


# Account fields and the item attributes they come from.
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


def external_id(item: Image, pointer: str):
    v = image_get(item, pointer)
    if isinstance(v, str) and v:
        return v
    if isinstance(v, JsonNumber):
        return v.text
    return None


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def encode_path_segment(s: str) -> str:
    """Percent-encodes everything but RFC 3986 unreserved characters, UTF-8 byte by byte."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in s.encode("utf-8"))


def _event(detail_type: str, detail: dict) -> Event:
    return Event(
        destination="salesforce", detail_type=detail_type, detail=to_json(detail), resources=[]
    )


# The tenant's config arrives with every record, the same text each time: parse it once.
_config_cache: tuple = (None, None)


def _tenant_config(text: str):
    global _config_cache
    if _config_cache[0] != text:
        try:
            _config_cache = (text, parse_json(text))
        except (ValueError, RecursionError) as e:
            raise Err(f"tenant config is not JSON: {e}")
    return _config_cache[1]


def map_record(record: StreamRecord, tenant: Tenant) -> list:
    config = _tenant_config(tenant.config)
    field = config_str(config, "external_id_field")
    if field is None:
        raise Err("config.external_id_field must name the Account's external id field")
    id_pointer = _or(config_str(config, "external_id"), "/customerId")
    api_version = _or(config_str(config, "api_version"), "v61.0")
    remove = record.change == Change.REMOVE
    if remove and _or(config_str(config, "on_remove"), "skip") == "skip":
        return []
    image = record.old_image if remove else record.new_image
    item = record.keys if image is None else image
    ident = external_id(item, id_pointer)
    if ident is None:
        ident = external_id(record.keys, id_pointer)
    if ident is None:
        raise Err(f"the item has no external id at {id_pointer}")
    path = f"/services/data/{api_version}/sobjects/Account/{field}/{encode_path_segment(ident)}"
    if remove:
        return [
            _event(
                "SalesforceAccountDelete",
                {"externalIdField": field, "externalId": ident, "path": path},
            )
        ]
    body = {}
    for account_field, pointer in FIELDS:
        v = image_get(item, pointer)
        if v is not _ABSENT and v is not None:
            body[account_field] = eventbridge_safe(v)
    if "Name" not in body:
        raise Err("the item has no name; Salesforce requires Account.Name")
    return [
        _event(
            "SalesforceAccountUpsert",
            {"externalIdField": field, "externalId": ident, "path": path, "body": body},
        )
    ]


def _or(value, default: str) -> str:
    """``value`` unless it is None (an empty string is kept, as in Rust's unwrap_or)."""
    return default if value is None else value


class Transformer(exports.Transformer):
    """The ``weir:transform/transformer`` export: the events, or ``Err(reason)``."""

    def transform(self, record: StreamRecord, tenant: Tenant) -> list:
        try:
            return map_record(record, tenant)
        finally:
            # The images are the host's for this call: release the handles now.
            for image in (record.keys, record.new_image, record.old_image):
                if image is not None:
                    image.__exit__(None, None, None)


# Run the reader and writer once while the component is built (componentize-py snapshots
# the module after import), so a tenant's first record does not pay for their warm-up.
to_json(eventbridge_safe(parse_json('{"a":[1,-0.5e3,"\\u00e9",true,null,{"b":{}}]}')))
