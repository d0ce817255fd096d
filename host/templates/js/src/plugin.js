// {{name}}: a weir plugin. weir calls `transform` once per DynamoDB stream record, with the
// record's images as JSON text and the tenant's `config` from the manifest as JSON text.
// `npm run build` compiles it with componentize-qjs (QuickJS, about 1.6 MB), with every
// WASI import stubbed out: a plugin needs none.
//
// - returning events publishes them (one PutEvents entry each);
// - returning [] filters the record: nothing is sent;
// - throwing a string dead-letters the record with that reason.
//
// Numbers: images hold DynamoDB numbers of up to 38 digits, and JSON.parse turns them into
// floats. This template reads only strings; to pass numbers on, keep their text (see
// plugins/salesforce-account-js in the weir repository) and write integers outside i64 as
// strings.

import { log } from "weir:transform/log@0.1.0";

function transform(record, tenant) {
  // Deletions are not sent on: no events filters the record.
  if (record.change === "remove") return [];
  // The item as it now is (a KEYS_ONLY stream carries no image).
  if (record.newImage === undefined) return [];
  const item = JSON.parse(record.newImage);
  if (typeof item.id !== "string") throw "the item has no string id";
  if (typeof item.name !== "string") throw "the item has no name";
  // Per-tenant settings come from the manifest's `config` for the tenant.
  const config = JSON.parse(tenant.config);
  const destination = typeof config.destination === "string" ? config.destination : "webhook";
  if (item.name.length > 200) log("warn", `a long name: ${item.name.length} characters`);
  // Keys in sorted order, written compactly: the same bytes as the Rust template.
  const detail = {
    change: record.change.toUpperCase(),
    id: item.id,
    name: item.name,
    tenant: tenant.id,
  };
  return [{ destination, detailType: "ItemChanged", detail: JSON.stringify(detail), resources: [] }];
}

// The `weir:transform/transformer` export.
export const transformer = { transform };
