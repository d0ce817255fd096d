// {{name}}: a weir plugin. weir calls `transform` once per DynamoDB stream record, with the
// tenant's `config` from the manifest as JSON text. The record's keys and images are read
// through weir by JSON pointer (`image.getString("/address/city")`, `getNumber`, `getBool`,
// `toJson` for a whole value; see wit/transform.wit): only what is read is decoded.
// `npm run build` compiles it with componentize-qjs (QuickJS, about 1.6 MB), with every
// WASI import stubbed out: a plugin needs none.
//
// - returning events publishes them (one PutEvents entry each);
// - returning [] filters the record: nothing is sent;
// - throwing a string dead-letters the record with that reason.
//
// Numbers: `getNumber` gives a DynamoDB number's exact text (up to 38 digits), which
// Number() would round. This template reads only strings; to pass numbers on, keep their
// text (see plugins/salesforce-account-js in the weir repository) and write integers
// outside i64 as strings.

import { log } from "weir:transform/log@0.2.0";

// The tenant's config is the same text on every call: parse it once.
let configText = null;
let config = null;

function transform(record, tenant) {
  // Deletions are not sent on: no events filters the record.
  if (record.change === "remove") return [];
  // The item as it now is (a KEYS_ONLY stream carries no image).
  const item = record.newImage;
  if (item == null) return [];
  const id = item.getString("/id");
  if (id == null) throw "the item has no string id";
  const name = item.getString("/name");
  if (name == null) throw "the item has no name";
  // Per-tenant settings come from the manifest's `config` for the tenant.
  if (tenant.config !== configText) {
    config = JSON.parse(tenant.config);
    configText = tenant.config;
  }
  const destination = typeof config.destination === "string" ? config.destination : "webhook";
  if (name.length > 200) log("warn", `a long name: ${name.length} characters`);
  // Keys in sorted order, written compactly: the same bytes as the Rust template.
  const detail = { change: record.change.toUpperCase(), id, name, tenant: tenant.id };
  return [{ destination, detailType: "ItemChanged", detail: JSON.stringify(detail), resources: [] }];
}

// The `weir:transform/transformer` export. The images are weir's for the call: release
// their handles when it ends.
export const transformer = {
  transform(record, tenant) {
    try {
      return transform(record, tenant);
    } finally {
      for (const image of [record.keys, record.newImage, record.oldImage]) image?.drop();
    }
  },
};
