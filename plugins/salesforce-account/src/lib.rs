//! Maps a customer item to a Salesforce Account upsert by external id.
//!
//! ```toml
//! config = { external_id_field = "Weir_Customer_Id__c", external_id = "/customerId",
//!            api_version = "v61.0", on_remove = "skip" }
//! ```
//! The event is for the `salesforce` destination: an API destination that sends
//! `PATCH /services/data/{api_version}/sobjects/Account/{field}/{id}` with `body`.
//! `on_remove = "delete"` turns REMOVEs into `SalesforceAccountDelete` events instead of
//! skipping them. Integers too long for EventBridge (outside i64) are sent as strings with
//! every digit, which Salesforce accepts for number and currency fields.

use weir_plugin_sdk::{Error, Event, Image, Map, Record, Tenant, Value, eventbridge_safe, json};

/// Account fields and the item attributes they come from.
const FIELDS: &[(&str, &str)] = &[
    ("AnnualRevenue", "/lifetimeValue"),
    ("BillingCity", "/address/city"),
    ("BillingCountry", "/address/country"),
    ("BillingPostalCode", "/address/zip"),
    ("BillingStreet", "/address/street"),
    ("Name", "/name"),
    ("NumberOfEmployees", "/employees"),
    ("Phone", "/phone"),
    ("Website", "/website"),
];

fn transform(record: &Record, tenant: &Tenant) -> Result<Vec<Event>, Error> {
    let field = tenant
        .config_str("external_id_field")
        .ok_or("config.external_id_field must name the Account's external id field")?;
    let id_pointer = tenant.config_str("external_id").unwrap_or("/customerId");
    let api_version = tenant.config_str("api_version").unwrap_or("v61.0");
    let remove = record.change.as_str() == "REMOVE";
    if remove && tenant.config_str("on_remove").unwrap_or("skip") == "skip" {
        return Ok(vec![]);
    }
    let item = record.image().unwrap_or(&record.keys);
    let id = external_id(item, id_pointer)
        .or_else(|| external_id(&record.keys, id_pointer))
        .ok_or_else(|| format!("the item has no external id at {id_pointer}"))?;
    let path = format!(
        "/services/data/{api_version}/sobjects/Account/{field}/{}",
        encode_path_segment(&id)
    );
    if remove {
        return Ok(vec![Event::new(
            "salesforce",
            "SalesforceAccountDelete",
            json!({ "externalIdField": field, "externalId": id, "path": path }),
        )]);
    }
    let mut body = Map::new();
    for (account_field, pointer) in FIELDS {
        if let Some(v) = item.get(pointer)
            && !v.is_null()
        {
            body.insert((*account_field).to_owned(), eventbridge_safe(v));
        }
    }
    if !body.contains_key("Name") {
        return Err("the item has no name; Salesforce requires Account.Name".into());
    }
    Ok(vec![Event::new(
        "salesforce",
        "SalesforceAccountUpsert",
        json!({ "externalIdField": field, "externalId": id, "path": path, "body": Value::Object(body) }),
    )])
}

fn external_id(item: &Image, pointer: &str) -> Option<String> {
    match item.get(pointer)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

weir_plugin_sdk::plugin!(transform);
