// Runs the node-sdk handler on one event K times, for weir's benchmark.
//
//     node run.mjs --event FILE --config FILE --iterations K [--batch-size B] --entries-out FILE
//
// The event is loaded once and split into Lambda invocations of B records (default: all
// of them in one), each kept as its JSON text, as Lambda delivers it. Each iteration parses
// each invocation's text and calls `handler(invocation, null)` on it, in turn, with a
// collector in place of the EventBridge client, and times the two together: Node's managed
// runtime parses the event inside the billed invocation too. The entries of the
// first iteration go to --entries-out, one JSON per line as `weir run` prints them; stdout
// gets one JSON line with the counts (of one iteration), each call's time in ms and the
// peak RSS.

import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { configure, handler } from "./handler.mjs";

/** Stands in for the SDK's EventBridge client: keeps each PutEvents request. */
class Collector {
  requests = [];

  async putEvents(input) {
    this.requests.push(input.Entries);
    return { FailedEntryCount: 0, Entries: [] };
  }
}

function usage(message) {
  process.stderr.write(
    `node-sdk: ${message}\nusage: run.mjs --event FILE --config FILE --iterations K [--batch-size B] --entries-out FILE\n`,
  );
  process.exit(2);
}

async function main() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        event: { type: "string" },
        config: { type: "string" },
        iterations: { type: "string" },
        "batch-size": { type: "string" },
        "entries-out": { type: "string" },
      },
    }));
  } catch (e) {
    usage(e.message);
  }
  for (const name of ["event", "config", "iterations", "entries-out"]) {
    if (values[name] === undefined) usage(`--${name} is required`);
  }
  const iterations = Number(values.iterations);
  if (!Number.isInteger(iterations) || iterations < 1) {
    usage(`--iterations must be a whole number of at least 1, found ${values.iterations}`);
  }

  const batchSize = values["batch-size"] === undefined ? null : Number(values["batch-size"]);
  if (batchSize !== null && (!Number.isInteger(batchSize) || batchSize < 1)) {
    usage(`--batch-size must be a whole number of at least 1, found ${values["batch-size"]}`);
  }

  const config = JSON.parse(readFileSync(values.config, "utf8"));
  const records = JSON.parse(readFileSync(values.event, "utf8")).Records;
  const size = batchSize ?? Math.max(records.length, 1);
  const invocations = [];
  for (let i = 0; i < records.length; i += size) {
    invocations.push(JSON.stringify({ Records: records.slice(i, i + size) }));
  }

  const batchMs = [];
  let first = null;
  let firstRequests = null;
  for (let i = 0; i < iterations; i++) {
    const collector = new Collector();
    configure(config, collector);
    const results = [];
    for (const invocation of invocations) {
      const start = process.hrtime.bigint();
      results.push(await handler(JSON.parse(invocation), null));
      batchMs.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    if (first === null) {
      first = {
        entries: results.reduce((n, r) => n + r.entries, 0),
        filtered: results.reduce((n, r) => n + r.filtered, 0),
        deadLetters: results.flatMap((r) => r.deadLetters),
      };
      firstRequests = collector.requests;
    }
  }

  const lines = [];
  for (const request of firstRequests) {
    for (const entry of request) lines.push(`${JSON.stringify(entry)}\n`);
  }
  writeFileSync(values["entries-out"], lines.join(""));

  process.stdout.write(
    `${JSON.stringify({
      name: "node-sdk",
      records: records.length,
      entries: first.entries,
      filtered: first.filtered,
      dead_lettered: first.deadLetters.length,
      batch_ms: batchMs,
      peak_rss_mb: peakRssKb() / 1024,
    })}\n`,
  );
  if (first.deadLetters.length > 0) {
    const letter = first.deadLetters[0];
    process.stderr.write(
      `node-sdk: ${first.deadLetters.length} records dead-lettered, the first ${letter.eventID}: ${letter.error}\n`,
    );
  }
}

await main();

// This process's own high-water RSS. Linux keeps maxRSS across exec, so a child started by
// a big parent would report the parent's peak; VmHWM is per process image.
function peakRssKb() {
  try {
    const line = readFileSync("/proc/self/status", "utf8")
      .split("\n")
      .find((l) => l.startsWith("VmHWM:"));
    if (line) return Number(line.split(/\s+/)[1]);
  } catch {
    // not Linux: fall back below
  }
  return process.resourceUsage().maxRSS;
}
