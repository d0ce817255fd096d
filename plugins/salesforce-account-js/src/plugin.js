// Maps a customer item to a Salesforce Account upsert by external id: the JavaScript build
// of plugins/salesforce-account (Rust), producing byte-identical events.
//
//   config = { external_id_field = "Weir_Customer_Id__c", external_id = "/customerId",
//              api_version = "v61.0", on_remove = "skip" }
//
// The event is for the `salesforce` destination: an API destination that sends
// `PATCH /services/data/{api_version}/sobjects/Account/{field}/{id}` with `body`.
// `on_remove = "delete"` turns REMOVEs into `SalesforceAccountDelete` events instead of
// skipping them. Integers outside i64 are sent as strings with every digit.
//
// The item's images are `weir:transform@0.2.0` image resources: each field is read through
// the host by JSON pointer, as plain JSON text of that one value, so attributes the mapping
// does not read are never decoded or copied. Numbers carry up to 38 significant digits, so
// values (and the tenant's config) are parsed with a reader that keeps each number's text,
// never a float, and events are written the way the Rust SDK's serde_json writes them:
// compact, object keys sorted by code point, only `"`, `\` and control characters escaped,
// numbers with every digit.

// A JSON number is held as a string: U+DFFF followed by the number's text. Strings from
// weir are UTF-8, so a real string never holds a lone surrogate and the mark is unambiguous.
const NUMBER_MARK = 0xdfff;

function isNumber(v) {
  return typeof v === "string" && v.charCodeAt(0) === NUMBER_MARK;
}

function isString(v) {
  return typeof v === "string" && v.charCodeAt(0) !== NUMBER_MARK;
}

/** The text of a number value, exactly as it was written. */
function numberText(v) {
  return v.slice(1);
}

// ---------------------------------------------------------------------------------------
// Reading JSON, keeping every number's text.
//
// JSON.parse with source text access (both SpiderMonkey and QuickJS-ng have it) hands the
// reviver each number's text. JSON.parse accepts escaped lone surrogates, which serde_json
// refuses and which could pass for the mark, so text with a surrogate escape (weir never
// writes one) and engines without source access take the strict reader below instead.

// serde_json (arbitrary_precision) keeps a number's digits but writes its exponent as `e`
// with a sign: `1E5` and `1e5` become `1e+5`. Numbers are held in that form.
function serdeNumberText(text) {
  let e = text.indexOf("e");
  if (e < 0) e = text.indexOf("E");
  if (e < 0) return text;
  const sign = text[e + 1];
  return sign === "+" || sign === "-"
    ? text.slice(0, e) + "e" + text.slice(e + 1)
    : text.slice(0, e) + "e+" + text.slice(e + 1);
}

function keepNumberText(key, value, context) {
  return typeof value === "number" ? "\udfff" + serdeNumberText(context.source) : value;
}

const HAS_SOURCE_TEXT = (() => {
  try {
    return JSON.parse("[10.0]", keepNumberText)[0] === "\udfff10.0";
  } catch {
    return false;
  }
})();

const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

/** Parses `text` (one JSON value); throws an Error saying what is wrong on bad input. */
function parseJson(text) {
  if (!HAS_SOURCE_TEXT || (text.indexOf("\\u") >= 0 && SURROGATE_ESCAPE.test(text))) {
    return parseJsonStrict(text);
  }
  return JSON.parse(text, keepNumberText);
}

const TOKEN = /[ \t\n\r]*(?:("(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*")|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)|([{}[\]:,])|(true|false|null))/y;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** A token-by-token reader for the rare text the fast path leaves: as strict as serde_json. */
function parseJsonStrict(text) {
  TOKEN.lastIndex = 0;
  let m = null;
  const next = () => {
    const at = TOKEN.lastIndex;
    m = TOKEN.exec(text);
    if (m === null) throw new Error(`unexpected input at offset ${at}`);
    return m;
  };
  const atom = (t) => {
    if (t[1] !== undefined) {
      const s = t[1].indexOf("\\") < 0 ? t[1].slice(1, -1) : JSON.parse(t[1]);
      if (LONE_SURROGATE.test(s)) throw new Error(`lone surrogate in a string before offset ${TOKEN.lastIndex}`);
      return s;
    }
    if (t[2] !== undefined) return "\udfff" + serdeNumberText(t[2]);
    if (t[4] !== undefined) return t[4] === "null" ? null : t[4] === "true";
    return undefined;
  };
  const value = (t, depth) => {
    const p = t[3];
    if (p === undefined) return atom(t);
    if (depth > 128) throw new Error("nested too deeply");
    if (p === "[") {
      const out = [];
      let u = next();
      if (u[3] === "]") return out;
      for (;;) {
        out.push(value(u, depth + 1));
        u = next();
        if (u[3] === "]") return out;
        if (u[3] !== ",") throw new Error(`expected , or ] at offset ${TOKEN.lastIndex}`);
        u = next();
      }
    }
    if (p === "{") {
      const out = Object.create(null);
      let u = next();
      if (u[3] === "}") return out;
      for (;;) {
        if (u[1] === undefined) throw new Error(`expected a key at offset ${TOKEN.lastIndex}`);
        const key = atom(u);
        if (next()[3] !== ":") throw new Error(`expected : at offset ${TOKEN.lastIndex}`);
        out[key] = value(next(), depth + 1);
        u = next();
        if (u[3] === "}") return out;
        if (u[3] !== ",") throw new Error(`expected , or } at offset ${TOKEN.lastIndex}`);
        u = next();
      }
    }
    throw new Error(`unexpected ${p} at offset ${TOKEN.lastIndex}`);
  };
  const v = value(next(), 0);
  if (!/^[ \t\n\r]*$/.test(text.slice(TOKEN.lastIndex))) {
    throw new Error(`trailing characters at offset ${TOKEN.lastIndex}`);
  }
  return v;
}

function isObject(v) {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------
// Writing JSON as serde_json does.

// Orders strings by code point (UTF-8 byte order, as Rust's BTreeMap<String, _> does), not by
// UTF-16 unit as Array.prototype.sort does: the two differ only when a surrogate (a code point
// above U+FFFF) meets U+E000..U+FFFF.
function byCodePoint(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}

// Any UTF-16 unit from U+D800 up: only then can the two orders differ.
const HIGH_UNIT = /[\ud800-\uffff]/;

/** `v` as compact JSON, as serde_json writes it. */
function toJson(v) {
  if (v === null) return "null";
  if (typeof v === "string") {
    // JSON.stringify escapes exactly what serde_json does for well-formed strings.
    return v.charCodeAt(0) === NUMBER_MARK ? numberText(v) : JSON.stringify(v);
  }
  if (typeof v === "boolean") return v ? "true" : "false";
  if (Array.isArray(v)) {
    let out = "[";
    for (let i = 0; i < v.length; i++) out += (i > 0 ? "," : "") + toJson(v[i]);
    return out + "]";
  }
  if (typeof v === "object") {
    const keys = Object.keys(v);
    keys.sort();
    if (HIGH_UNIT.test(keys.join(""))) keys.sort(byCodePoint);
    let out = "{";
    for (let i = 0; i < keys.length; i++) {
      out += (i > 0 ? "," : "") + JSON.stringify(keys[i]) + ":" + toJson(v[keys[i]]);
    }
    return out + "}";
  }
  throw new Error(`cannot write ${typeof v} as JSON`);
}

// ---------------------------------------------------------------------------------------
// The SDK's helpers: JSON Pointer lookups and EventBridge-safe numbers.

function unescapeToken(t) {
  return t.indexOf("~") < 0 ? t : t.replaceAll("~1", "/").replaceAll("~0", "~");
}

// A pointer's reference tokens, split once per pointer text.
const POINTER_TOKENS = new Map();

function pointerTokens(pointer) {
  let tokens = POINTER_TOKENS.get(pointer);
  if (tokens === undefined) {
    tokens = pointer.slice(1).split("/").map(unescapeToken);
    if (POINTER_TOKENS.size < 64) POINTER_TOKENS.set(pointer, tokens);
  }
  return tokens;
}

const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/;

/**
 * The value at RFC 6901 `pointer` in `image` (a host image resource), or undefined (as the
 * Rust SDK's Image::get): one host call, which answers with that value's plain JSON.
 */
function imageGet(image, pointer) {
  const text = image.toJson(pointer);
  if (text == null) return undefined;
  // Most values are a plain string or a number: taken from the text without a parser.
  const first = text.charCodeAt(0);
  if (first === 0x22 && text.indexOf("\\") < 0) return text.slice(1, -1);
  if (first === 0x2d || (first >= 0x30 && first <= 0x39)) return "\udfff" + serdeNumberText(text);
  return parseJson(text);
}

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

function fitsI64(text) {
  const digits = text.startsWith("-") ? text.length - 1 : text.length;
  if (digits <= 18) return true;
  const n = BigInt(text);
  return n >= I64_MIN && n <= I64_MAX;
}

/** `v` with every integer outside i64 written as a string of all its digits. */
function eventbridgeSafe(v) {
  if (isNumber(v)) {
    const t = numberText(v);
    const integer = t.indexOf(".") < 0 && t.indexOf("e") < 0 && t.indexOf("E") < 0;
    return !integer || fitsI64(t) ? v : t;
  }
  if (Array.isArray(v)) return v.map(eventbridgeSafe);
  if (isObject(v)) {
    const out = Object.create(null);
    for (const k of Object.keys(v)) out[k] = eventbridgeSafe(v[k]);
    return out;
  }
  return v;
}

function configStr(config, key) {
  if (!isObject(config) || !Object.hasOwn(config, key)) return undefined;
  const v = config[key];
  return isString(v) ? v : undefined;
}

// ---------------------------------------------------------------------------------------
// The mapping.

/** Account fields and the item attributes they come from (sorted, as the Rust plugin's). */
const FIELDS = [
  ["AnnualRevenue", "/lifetimeValue"],
  ["BillingCity", "/address/city"],
  ["BillingCountry", "/address/country"],
  ["BillingPostalCode", "/address/zip"],
  ["BillingStreet", "/address/street"],
  ["Name", "/name"],
  ["NumberOfEmployees", "/employees"],
  ["Phone", "/phone"],
  ["Website", "/website"],
];

function externalId(item, pointer) {
  const v = imageGet(item, pointer);
  if (isString(v) && v.length > 0) return v;
  if (isNumber(v)) return numberText(v);
  return undefined;
}

const HEX = "0123456789ABCDEF";

function percent(b) {
  return "%" + HEX[b >> 4] + HEX[b & 15];
}

function isUnreserved(c) {
  return (
    (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) ||
    c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e
  );
}

const UNRESERVED_ONLY = /^[A-Za-z0-9._~-]*$/;

/** Percent-encodes everything but RFC 3986 unreserved characters, UTF-8 byte by byte. */
function encodePathSegment(s) {
  if (UNRESERVED_ONLY.test(s)) return s;
  let out = "";
  let plain = 0; // start of the run of unreserved characters not yet copied
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (isUnreserved(c)) continue;
    out += s.slice(plain, i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      c = 0x10000 + ((c - 0xd800) << 10) + (s.charCodeAt(i + 1) - 0xdc00);
      i++;
    }
    if (c < 0x80) {
      out += percent(c);
    } else if (c < 0x800) {
      out += percent(0xc0 | (c >> 6)) + percent(0x80 | (c & 63));
    } else if (c < 0x10000) {
      out += percent(0xe0 | (c >> 12)) + percent(0x80 | ((c >> 6) & 63)) + percent(0x80 | (c & 63));
    } else {
      out += percent(0xf0 | (c >> 18)) + percent(0x80 | ((c >> 12) & 63)) +
        percent(0x80 | ((c >> 6) & 63)) + percent(0x80 | (c & 63));
    }
    plain = i + 1;
  }
  return plain === 0 ? s : out + s.slice(plain);
}

// The tenant's config arrives with every record, the same text each time: parse it once.
let lastConfigText = null;
let lastConfig = null;

function tenantConfig(text) {
  if (text !== lastConfigText) {
    try {
      lastConfig = parseJson(text);
    } catch (e) {
      throw `tenant config is not JSON: ${e.message}`;
    }
    lastConfigText = text;
  }
  return lastConfig;
}

/** The record's image resources, released when the call ends (the host keeps them for it). */
function releaseImages(record) {
  for (const image of [record.keys, record.newImage, record.oldImage]) {
    if (image != null) image.drop();
  }
}

function mapRecord(record, tenant) {
  const config = tenantConfig(tenant.config);
  const field = configStr(config, "external_id_field");
  if (field === undefined) {
    throw "config.external_id_field must name the Account's external id field";
  }
  const idPointer = configStr(config, "external_id") ?? "/customerId";
  const apiVersion = configStr(config, "api_version") ?? "v61.0";
  const remove = record.change === "remove";
  if (remove && (configStr(config, "on_remove") ?? "skip") === "skip") {
    return [];
  }
  const image = remove ? record.oldImage : record.newImage;
  const item = image ?? record.keys;
  const id = externalId(item, idPointer) ?? externalId(record.keys, idPointer);
  if (id === undefined) throw `the item has no external id at ${idPointer}`;
  const path = `/services/data/${apiVersion}/sobjects/Account/${field}/${encodePathSegment(id)}`;
  if (remove) {
    return [event("SalesforceAccountDelete", { externalIdField: field, externalId: id, path })];
  }
  const body = Object.create(null);
  for (let i = 0; i < FIELDS.length; i++) {
    const v = imageGet(item, FIELDS[i][1]);
    if (v !== undefined && v !== null) body[FIELDS[i][0]] = eventbridgeSafe(v);
  }
  if (!("Name" in body)) {
    throw "the item has no name; Salesforce requires Account.Name";
  }
  return [event("SalesforceAccountUpsert", { externalIdField: field, externalId: id, path, body })];
}

function event(detailType, detail) {
  return { destination: "salesforce", detailType, detail: toJson(detail), resources: [] };
}

// Run the reader and writer once while the component is built (the engine's state is
// snapshotted after the module loads), so a tenant's first record skips their warm-up.
toJson(eventbridgeSafe(parseJson('{"a":[1,-0.5e3,"\\u00e9",true,null,{"b":{}}]}')));

/** The `weir:transform/transformer` export: returns the events, or throws the reason. */
export const transformer = {
  transform(record, tenant) {
    try {
      return mapRecord(record, tenant);
    } finally {
      releaseImages(record);
    }
  },
};
