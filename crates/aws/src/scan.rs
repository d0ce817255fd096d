//! A table's items for a backfill: a parallel Scan (`Segment` of `TotalSegments`) page by
//! page, each item as DynamoDB's typed JSON (`{"name": {"S": "x"}}`), the text a stream
//! record carries, so it goes through `weir_core::backfill` and the pipeline unchanged.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use weir_core::record::write_json_string;

use crate::client::describe_sdk_error;

/// What a backfill needs to know of the table.
#[derive(Debug, Clone)]
pub struct TableShape {
    /// Its ARN, which names it in every record.
    pub arn: String,
    /// Its key attributes (partition key, and sort key if any).
    pub key_names: Vec<String>,
    /// DynamoDB's estimate of its items (updated about every six hours), for the ETA.
    pub item_count_estimate: Option<i64>,
}

/// One page of one segment.
#[derive(Debug)]
pub struct Page {
    /// Its items, each as typed JSON text.
    pub items: Vec<String>,
    /// Where the next page starts (`LastEvaluatedKey` as typed JSON), or `None` at the end
    /// of the segment.
    pub next: Option<String>,
}

/// Scans one table with the SDK's standard configuration and retries; a page refused for
/// throughput is retried with backoff, so a production table is slowed, not failed.
#[derive(Clone)]
pub struct TableScan {
    client: aws_sdk_dynamodb::Client,
    table: String,
    page_size: Option<i32>,
}

impl TableScan {
    /// A scan of `table` with `page_size` items per page at most (DynamoDB's 1 MB otherwise).
    pub fn new(sdk: &aws_config::SdkConfig, table: &str, page_size: Option<i32>) -> Self {
        TableScan {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.to_owned(),
            page_size,
        }
    }

    /// The table's ARN and keys.
    pub async fn describe(&self) -> anyhow::Result<TableShape> {
        let out = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", describe_sdk_error(&e)))
            .with_context(|| format!("cannot describe table {}", self.table))?;
        let Some(table) = out.table() else {
            bail!("DescribeTable gave no table for {}", self.table);
        };
        let arn = table
            .table_arn()
            .with_context(|| format!("table {} has no ARN", self.table))?
            .to_owned();
        let key_names = table
            .key_schema()
            .iter()
            .map(|k| k.attribute_name().to_owned())
            .collect();
        Ok(TableShape {
            arn,
            key_names,
            item_count_estimate: table.item_count(),
        })
    }

    /// The page of `segment` (of `total`) starting at `start` (a previous page's `next`).
    pub async fn page(
        &self,
        segment: u32,
        total: u32,
        start: Option<&str>,
    ) -> anyhow::Result<Page> {
        let start = start.map(item_from_json).transpose()?;
        // DynamoDB's own bounds (TotalSegments up to 1,000,000), refused here rather than
        // wrapped into a negative number.
        let (Ok(segment_number), Ok(total_segments)) =
            (i32::try_from(segment), i32::try_from(total))
        else {
            bail!("segment {segment} of {total}: more segments than a Scan takes");
        };
        if segment >= total {
            bail!("segment {segment} of {total}: segments are numbered from 0 to {total} - 1");
        }
        let mut backoff = Duration::from_millis(100);
        for attempt in 1.. {
            let mut request = self
                .client
                .scan()
                .table_name(&self.table)
                .segment(segment_number)
                .total_segments(total_segments)
                .consistent_read(false)
                .set_exclusive_start_key(start.clone());
            if let Some(n) = self.page_size {
                request = request.limit(n);
            }
            match request.send().await {
                Ok(out) => {
                    return Ok(Page {
                        items: out.items().iter().map(item_json).collect(),
                        next: out.last_evaluated_key().map(item_json),
                    });
                }
                Err(e) if crate::client::is_transient(&e) && attempt < 12 => {
                    tracing::warn!(
                        segment,
                        "scan page refused ({}); backing off {} ms",
                        describe_sdk_error(&e),
                        backoff.as_millis()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => {
                    bail!(
                        "cannot scan segment {segment} of table {}: {}",
                        self.table,
                        describe_sdk_error(&e)
                    )
                }
            }
        }
        unreachable!("the loop returns or fails")
    }
}

/// An item as DynamoDB's typed JSON text.
pub fn item_json(item: &HashMap<String, AttributeValue>) -> String {
    let mut out = String::with_capacity(256);
    write_map(item, &mut out);
    out
}

fn write_map(map: &HashMap<String, AttributeValue>, out: &mut String) {
    // Sorted, so the same item is the same text on every read.
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    out.push('{');
    for (i, name) in names.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(name, out);
        out.push(':');
        if let Some(v) = map.get(name) {
            write_value(v, out);
        }
    }
    out.push('}');
}

fn write_value(v: &AttributeValue, out: &mut String) {
    let list = |tag: &str, items: &mut dyn Iterator<Item = String>, out: &mut String| {
        out.push_str("{\"");
        out.push_str(tag);
        out.push_str("\":[");
        for (i, s) in items.enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_string(&s, out);
        }
        out.push_str("]}");
    };
    let b64 = |b: &aws_sdk_dynamodb::primitives::Blob| aws_smithy_types::base64::encode(b.as_ref());
    match v {
        AttributeValue::S(s) => tagged("S", s, out),
        AttributeValue::N(n) => tagged("N", n, out),
        AttributeValue::B(b) => tagged("B", &b64(b), out),
        AttributeValue::Bool(b) => out.push_str(if *b {
            "{\"BOOL\":true}"
        } else {
            "{\"BOOL\":false}"
        }),
        AttributeValue::Null(_) => out.push_str("{\"NULL\":true}"),
        AttributeValue::Ss(v) => list("SS", &mut v.iter().cloned(), out),
        AttributeValue::Ns(v) => list("NS", &mut v.iter().cloned(), out),
        AttributeValue::Bs(v) => list("BS", &mut v.iter().map(b64), out),
        AttributeValue::M(m) => {
            out.push_str("{\"M\":");
            write_map(m, out);
            out.push('}');
        }
        AttributeValue::L(items) => {
            out.push_str("{\"L\":[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push_str("]}");
        }
        // A type newer than this SDK: kept visible, and refused by the decoder if read.
        _ => out.push_str("{\"UNKNOWN\":null}"),
    }
}

fn tagged(tag: &str, text: &str, out: &mut String) {
    out.push_str("{\"");
    out.push_str(tag);
    out.push_str("\":");
    write_json_string(text, out);
    out.push('}');
}

/// An item (a key, from a checkpoint) back from typed JSON text.
pub fn item_from_json(text: &str) -> anyhow::Result<HashMap<String, AttributeValue>> {
    let value: Value = serde_json::from_str(text).context("a saved key is not JSON")?;
    let Value::Object(map) = value else {
        bail!("a saved key is not an object of attributes");
    };
    map.into_iter()
        .map(|(k, v)| Ok((k, value_from_json(&v)?)))
        .collect()
}

fn value_from_json(v: &Value) -> anyhow::Result<AttributeValue> {
    let Some((tag, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        bail!("not an attribute value: {v}");
    };
    let text = || {
        inner
            .as_str()
            .map(str::to_owned)
            .context("expected a string")
    };
    let strings = || -> anyhow::Result<Vec<String>> {
        inner
            .as_array()
            .context("expected a list")?
            .iter()
            .map(|s| s.as_str().map(str::to_owned).context("expected a string"))
            .collect()
    };
    let blob = |s: &str| -> anyhow::Result<aws_sdk_dynamodb::primitives::Blob> {
        Ok(aws_sdk_dynamodb::primitives::Blob::new(
            aws_smithy_types::base64::decode(s).context("invalid base64")?,
        ))
    };
    Ok(match tag.as_str() {
        "S" => AttributeValue::S(text()?),
        "N" => AttributeValue::N(text()?),
        "B" => AttributeValue::B(blob(&text()?)?),
        "BOOL" => AttributeValue::Bool(inner.as_bool().context("expected a bool")?),
        "NULL" => AttributeValue::Null(true),
        "SS" => AttributeValue::Ss(strings()?),
        "NS" => AttributeValue::Ns(strings()?),
        "BS" => AttributeValue::Bs(
            strings()?
                .iter()
                .map(|s| blob(s))
                .collect::<Result<_, _>>()?,
        ),
        "M" => AttributeValue::M(
            inner
                .as_object()
                .context("expected a map")?
                .iter()
                .map(|(k, v)| Ok((k.clone(), value_from_json(v)?)))
                .collect::<anyhow::Result<_>>()?,
        ),
        "L" => AttributeValue::L(
            inner
                .as_array()
                .context("expected a list")?
                .iter()
                .map(value_from_json)
                .collect::<anyhow::Result<_>>()?,
        ),
        other => bail!("unknown type tag {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_go_to_typed_json_and_back_unchanged() {
        let text = r#"{"b":{"B":"AAE="},"bs":{"BS":["AQ=="]},"f":{"BOOL":false},"l":{"L":[{"N":"1"},{"NULL":true}]},"m":{"M":{"x":{"S":"é\"q"}}},"n":{"N":"12345678901234567890123456789012345678"},"ns":{"NS":["1","2"]},"ss":{"SS":["a"]}}"#;
        let item = item_from_json(text).expect("parses");
        assert_eq!(item_json(&item), text);
    }
}
