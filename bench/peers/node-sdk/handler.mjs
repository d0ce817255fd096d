// A DynamoDB Streams -> EventBridge Lambda handler of the kind users write today.
//
// It is the `node-sdk` contender of weir's benchmark: `@aws-sdk/util-dynamodb`'s
// `unmarshall` (with `wrapNumbers`, so no digit is lost) turns each image into JS values,
// plain JS maps a customer item to a Salesforce Account upsert (the same mapping as
// weir's `salesforce-account` plugin), wraps it in weir's metadata envelope and sends the
// entries with `putEvents`, 10 per request.
//
// Configuration is the JSON the benchmark driver writes:
// `{"event_bus", "source", "plugin", "tenant_attribute", "tenants": {id: config}}`.
// In Lambda it is read from the file named by `WEIR_PEER_CONFIG` and the client is
// `new EventBridge()` from `@aws-sdk/client-eventbridge` (not a dependency here: the
// benchmark calls `configure()` with a collector, so what is measured is the mapping,
// not the network).
//
// The output is byte-identical to weir's: numbers keep every digit of their DynamoDB
// text (normalised as weir normalises it), integers outside i64 become strings, payload
// keys are sorted by code point, strings are escaped as serde_json escapes them.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { NumberValueImpl as NumberValue, unmarshall } from "@aws-sdk/util-dynamodb";

/** EventBridge takes at most 10 entries per PutEvents request. */
const PUT_EVENTS_BATCH = 10;

/** DynamoDB numbers carry at most 38 significant digits. */
const MAX_NUMBER_DIGITS = 38;

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/** Account fields and the item attributes they come from, as the plugin has them. */
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
].map(([field, pointer]) => [field, pointerTokens(pointer)]);

const UNMARSHALL_OPTIONS = { wrapNumbers: true };

let config = null;
let client = null;

/** A record that cannot be mapped; it is dead-lettered with this message. */
class RecordError extends Error {}

/** Sets the configuration and the PutEvents client (the benchmark's collector). */
export function configure(rawConfig, eventsClient) {
  config = compileConfig(rawConfig);
  client = eventsClient;
}

function compileConfig(raw) {
  const tenants = new Map();
  for (const [id, c] of Object.entries(raw.tenants)) {
    const setting = (key, fallback) => (typeof c[key] === "string" ? c[key] : fallback);
    const idPointer = setting("external_id", "/customerId");
    tenants.set(id, {
      field: setting("external_id_field", null),
      idPointer,
      idTokens: pointerTokens(idPointer),
      apiVersion: setting("api_version", "v61.0"),
      skipRemoves: setting("on_remove", "skip") === "skip",
    });
  }
  return {
    eventBus: raw.event_bus,
    source: raw.source,
    plugin: raw.plugin,
    tenantAttribute: raw.tenant_attribute,
    tenants,
  };
}

async function loadDefaults() {
  if (config === null) {
    config = compileConfig(JSON.parse(readFileSync(process.env.WEIR_PEER_CONFIG, "utf8")));
  }
  if (client === null) {
    const { EventBridge } = await import("@aws-sdk/client-eventbridge");
    client = new EventBridge();
  }
}

/** Maps a batch of stream records and publishes the entries, 10 per PutEvents call. */
export const handler = async (event, _context) => {
  if (config === null || client === null) await loadDefaults();
  const entries = [];
  let filtered = 0;
  const deadLetters = [];
  for (const record of event.Records) {
    let entry;
    try {
      entry = mapRecord(record, config);
    } catch (e) {
      deadLetters.push({ eventID: record?.eventID, error: String(e?.message ?? e) });
      continue;
    }
    if (entry === null) filtered += 1;
    else entries.push(entry);
  }
  const requests = [];
  for (let i = 0; i < entries.length; i += PUT_EVENTS_BATCH) {
    requests.push(client.putEvents({ Entries: entries.slice(i, i + PUT_EVENTS_BATCH) }));
  }
  let failedEntries = 0;
  for (const response of await Promise.all(requests)) {
    failedEntries += response?.FailedEntryCount ?? 0;
  }
  return { entries: entries.length, failedEntries, filtered, deadLetters };
};

/** The PutEvents entry for one record, or null when it is filtered. */
function mapRecord(record, config) {
  const eventId = record.eventID;
  if (typeof eventId !== "string") throw new RecordError("eventID: missing");
  const change = record.eventName;
  if (change !== "INSERT" && change !== "MODIFY" && change !== "REMOVE") {
    throw new RecordError(`eventName: unknown event name ${JSON.stringify(change)}`);
  }
  const table = tableFromArn(record.eventSourceARN);
  const ddb = record.dynamodb;
  if (ddb === null || typeof ddb !== "object") throw new RecordError("dynamodb: missing");
  const sequenceNumber = ddb.SequenceNumber;
  if (typeof sequenceNumber !== "string" || !/^[0-9]{1,40}$/.test(sequenceNumber)) {
    throw new RecordError("dynamodb.SequenceNumber: not a decimal string of 1 to 40 digits");
  }
  const created = creationTime(ddb.ApproximateCreationDateTime);
  const rawKeys = ddb.Keys;
  if (rawKeys === null || typeof rawKeys !== "object") throw new RecordError("dynamodb.Keys: missing");
  const rawNew = ddb.NewImage ?? null;
  const rawOld = ddb.OldImage ?? null;

  let tenantId = tenantOf(config.tenantAttribute, rawNew, rawOld, rawKeys);
  let tenant = tenantId === null ? undefined : config.tenants.get(tenantId);
  if (tenant === undefined) {
    tenant = config.tenants.get("default");
    if (tenant === undefined) return null;
    if (tenantId === null) tenantId = "default";
  }

  const keys = unmarshall(rawKeys, UNMARSHALL_OPTIONS);
  const newImage = rawNew === null ? null : unmarshall(rawNew, UNMARSHALL_OPTIONS);
  const oldImage = rawOld === null ? null : unmarshall(rawOld, UNMARSHALL_OPTIONS);

  if (tenant.field === null) {
    throw new RecordError("config.external_id_field must name the Account's external id field");
  }
  const remove = change === "REMOVE";
  if (remove && tenant.skipRemoves) return null;
  const item = (remove ? oldImage : newImage) ?? keys;
  const externalId = externalIdOf(item, tenant.idTokens) ?? externalIdOf(keys, tenant.idTokens);
  if (externalId === null) {
    throw new RecordError(`the item has no external id at ${tenant.idPointer}`);
  }
  const path = `/services/data/${tenant.apiVersion}/sobjects/Account/${tenant.field}/${encodePathSegment(externalId)}`;
  const ids = `"externalId":${JSON.stringify(externalId)},"externalIdField":${JSON.stringify(tenant.field)},"path":${JSON.stringify(path)}`;
  let detailType;
  let payload;
  if (remove) {
    detailType = "SalesforceAccountDelete";
    payload = `{${ids}}`;
  } else {
    const body = [];
    let hasName = false;
    for (const [accountField, tokens] of FIELDS) {
      const value = get(item, tokens);
      if (value !== undefined && value !== null) {
        body.push(`"${accountField}":${toJson(value)}`);
        if (accountField === "Name") hasName = true;
      }
    }
    if (!hasName) throw new RecordError("the item has no name; Salesforce requires Account.Name");
    detailType = "SalesforceAccountUpsert";
    payload = `{"body":{${body.join(",")}},${ids}}`;
  }
  const metadata =
    `{"metadata":{"id":"${eventIdOf(eventId, 0)}","tenant":${metadataString(tenantId)},` +
    `"destination":"salesforce","plugin":${metadataString(config.plugin)},` +
    `"table":${metadataString(table)},"eventID":${metadataString(eventId)},` +
    `"eventName":"${change}","sequenceNumber":${metadataString(sequenceNumber)},` +
    `"item":${metadataString(itemKey(rawKeys))},"position":"${sequenceNumber.padStart(40, "0")}",` +
    `"approximateCreationTime":${created}},"payload":`;
  return {
    Source: config.source,
    DetailType: detailType,
    Detail: `${metadata}${payload}}`,
    EventBusName: config.eventBus,
    Resources: [],
  };
}

/** The item's key as weir's metadata gives it: the typed key attributes in name order. */
function itemKey(rawKeys) {
  const names = Object.keys(rawKeys).sort();
  return `{${names.map((n) => `${JSON.stringify(n)}:${JSON.stringify(rawKeys[n])}`).join(",")}}`;
}

/** The tenant id: the attribute's S (or N) text from the new image, old image or keys. */
function tenantOf(attribute, ...images) {
  for (const image of images) {
    if (image === null) continue;
    const value = image[attribute];
    if (value === null || typeof value !== "object" || !Object.hasOwn(image, attribute)) continue;
    const text = Object.hasOwn(value, "S") ? value.S : value.N;
    if (typeof text === "string") return text === "" ? null : text;
  }
  return null;
}

const TABLE_ARN = /^arn:[^:]*:dynamodb:[^:]*:[^:]*:table\/([^/]+)/;

function tableFromArn(arn) {
  const m = typeof arn === "string" ? TABLE_ARN.exec(arn) : null;
  if (m === null) {
    throw new RecordError(`eventSourceARN: ${JSON.stringify(arn)} is not a DynamoDB table or stream ARN`);
  }
  return m[1];
}

function pointerTokens(pointer) {
  if (!pointer.startsWith("/")) return null;
  return pointer
    .slice(1)
    .split("/")
    .map((t) => t.replaceAll("~1", "/").replaceAll("~0", "~"));
}

/** The value at a JSON Pointer (given as its tokens), or undefined. */
function get(item, tokens) {
  if (tokens === null) return undefined;
  let value = item;
  for (const token of tokens) {
    if (Array.isArray(value)) {
      if (!/^(0|[1-9][0-9]*)$/.test(token)) return undefined;
      value = value[Number(token)];
    } else if (
      value !== null &&
      typeof value === "object" &&
      !(value instanceof NumberValue) &&
      !(value instanceof Set) &&
      Object.hasOwn(value, token)
    ) {
      value = value[token];
    } else {
      return undefined;
    }
    if (value === undefined) return undefined;
  }
  return value;
}

function externalIdOf(item, tokens) {
  const value = get(item, tokens);
  if (typeof value === "string") return value === "" ? null : value;
  if (value instanceof NumberValue) return numberText(value.value);
  return null;
}

/** Percent-encodes everything but RFC 3986 unreserved characters. */
function encodePathSegment(s) {
  return encodeURIComponent(s).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

const CANONICAL_NUMBER = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?$/;
const DYNAMODB_NUMBER = /^([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?)([0-9]+))?$/;

/** A DynamoDB number's text as weir passes it on: in JSON's form, with every digit. */
function numberText(text) {
  let out = text;
  if (!CANONICAL_NUMBER.test(text)) {
    const m = DYNAMODB_NUMBER.exec(text);
    if (m === null || (m[2] === "" && (m[3] ?? "") === "")) {
      throw new RecordError(`N value ${JSON.stringify(text)} is not a number`);
    }
    const [, sign, int, frac = "", expSign, exp] = m;
    out = sign === "-" ? "-" : "";
    out += int.replace(/^0+/, "") || "0";
    if (frac !== "") out += `.${frac}`;
    // serde_json writes an exponent's sign, + included.
    if (exp !== undefined) out += `e${expSign === "-" ? "-" : "+"}${exp}`;
  }
  if (out.length > MAX_NUMBER_DIGITS && significantDigits(out) > MAX_NUMBER_DIGITS) {
    throw new RecordError(
      `N value ${JSON.stringify(text)} has more than ${MAX_NUMBER_DIGITS} significant digits`,
    );
  }
  return out;
}

function significantDigits(text) {
  const mantissa = text.split(/[eE]/)[0].replace(/[-.]/g, "");
  return mantissa.replace(/^0+/, "").replace(/0+$/, "").length;
}

/** serde_json's compact text for an unmarshalled value, keys sorted, with integers
 * outside i64 as strings (EventBridge refuses them as numbers). */
function toJson(value) {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "object":
      break;
    default:
      throw new RecordError(`cannot write a ${typeof value} as JSON`);
  }
  if (value === null) return "null";
  if (value instanceof NumberValue) {
    const text = numberText(value.value);
    if (
      text.length > 18 &&
      !/[.eE]/.test(text) &&
      (BigInt(text) < I64_MIN || BigInt(text) > I64_MAX)
    ) {
      return `"${text}"`;
    }
    return text;
  }
  if (Array.isArray(value)) return `[${value.map(toJson).join(",")}]`;
  if (value instanceof Set) return `[${Array.from(value, toJson).join(",")}]`;
  const keys = Object.keys(value);
  keys.sort(keys.some((k) => /[\ud800-\udfff]/.test(k)) ? byCodePoint : undefined);
  return `{${keys.map((k) => `${JSON.stringify(k)}:${toJson(value[k])}`).join(",")}}`;
}

/** Rust orders strings by UTF-8 bytes, that is by code point; JS by UTF-16 unit. */
function byCodePoint(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.length - y.length;
}

/** A JSON string as weir's envelope writes it: like serde_json, but \b and \f as \u00XX. */
function metadataString(s) {
  const text = JSON.stringify(s);
  if (!/[\b\f]/.test(s)) return text;
  return text.replace(/\\(.)/g, (m, c) => (c === "b" ? "\\u0008" : c === "f" ? "\\u000c" : m));
}

function eventIdOf(streamEventId, index) {
  const h = createHash("sha256").update(`${streamEventId}/${index}`).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** `ApproximateCreationDateTime` (epoch seconds) as a quoted RFC 3339 time, or null. */
function creationTime(seconds) {
  if (seconds === undefined || seconds === null) return "null";
  let ms;
  if (typeof seconds === "number" && Number.isInteger(seconds) && seconds >= 0) {
    ms = seconds * 1000;
  } else if (typeof seconds === "number" && seconds >= 0 && seconds < 1e16) {
    ms = Math.round(seconds * 1000);
  } else {
    throw new RecordError(
      `dynamodb.ApproximateCreationDateTime: ${JSON.stringify(seconds)} is not a time in epoch seconds`,
    );
  }
  if (ms < 253402300800000) return `"${new Date(ms).toISOString()}"`;
  // Past year 9999 toISOString writes +YYYYYY; weir writes the year's digits.
  const days = Math.floor(ms / 86400000);
  const rem = Math.floor(ms / 1000) % 86400;
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const two = (n) => String(n).padStart(2, "0");
  return `"${year}-${two(month)}-${two(day)}T${two(Math.floor(rem / 3600))}:${two(Math.floor((rem % 3600) / 60))}:${two(rem % 60)}.${String(ms % 1000).padStart(3, "0")}Z"`;
}
