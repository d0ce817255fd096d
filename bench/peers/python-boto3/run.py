"""Runs the python-boto3 handler on one event K times, for weir's benchmark.

    run.py --event FILE --config FILE --iterations K [--batch-size B] --entries-out FILE

The event is loaded once and split into Lambda invocations of B records (default: all
of them in one). Each iteration calls `handler(invocation, None)` on each in turn, with a
collector in place of the EventBridge client, and times each call. The entries of the
first iteration go to --entries-out, one JSON per line as `weir run` prints them; stdout
gets one JSON line with the counts (of one iteration), each call's time in ms and the
peak RSS.
"""

import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import handler  # noqa: E402


class Collector:
    """Stands in for boto3's EventBridge client: keeps each PutEvents request."""

    def __init__(self):
        self.requests = []

    def put_events(self, Entries):  # noqa: N803 (boto3's parameter name)
        self.requests.append(Entries)
        return {"FailedEntryCount": 0, "Entries": []}


def peak_rss_kb():
    """This process's own high-water RSS. Linux keeps ru_maxrss across exec, so a child
    started by a big parent would report the parent's peak; VmHWM is per process image."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--event", required=True, help="a Lambda event for DynamoDB Streams")
    parser.add_argument("--config", required=True, help="the benchmark's peer config JSON")
    parser.add_argument("--iterations", type=int, required=True, help="times to run the event")
    parser.add_argument("--batch-size", type=int, help="records per invocation (default: all)")
    parser.add_argument("--entries-out", required=True, help="where the first batch's entries go")
    args = parser.parse_args()
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch-size must be at least 1")

    with open(args.config, encoding="utf-8") as f:
        config = json.load(f)
    with open(args.event, encoding="utf-8") as f:
        event = json.load(f)

    records = event["Records"]
    size = args.batch_size or max(len(records), 1)
    invocations = [
        json.dumps({"Records": records[i : i + size]}) for i in range(0, len(records), size)
    ]

    batch_ms = []
    first = None
    first_requests = None
    for _ in range(args.iterations):
        collector = Collector()
        handler.configure(config, collector)
        results = []
        for invocation in invocations:
            start = time.perf_counter()
            results.append(handler.handler(json.loads(invocation), None))
            batch_ms.append((time.perf_counter() - start) * 1000.0)
        if first is None:
            first = {
                "entries": sum(r["entries"] for r in results),
                "filtered": sum(r["filtered"] for r in results),
                "deadLetters": [d for r in results for d in r["deadLetters"]],
            }
            first_requests = collector.requests

    with open(args.entries_out, "w", encoding="utf-8") as out:
        for request in first_requests:
            for entry in request:
                out.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")))
                out.write("\n")

    peak_kb = peak_rss_kb()
    print(
        json.dumps(
            {
                "name": "python-boto3",
                "records": len(records),
                "entries": first["entries"],
                "filtered": first["filtered"],
                "dead_lettered": len(first["deadLetters"]),
                "batch_ms": batch_ms,
                "peak_rss_mb": peak_kb / 1024.0,
            },
            separators=(",", ":"),
        )
    )
    if first["deadLetters"]:
        letter = first["deadLetters"][0]
        print(
            f"python-boto3: {len(first['deadLetters'])} records dead-lettered, "
            f"the first {letter['eventID']}: {letter['error']}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
