//! The one way weir sends many items in batched AWS calls before a deadline: pack, send,
//! re-send what failed transiently with full-jitter backoff, split a refused call to find
//! the item that spoiled it, and stop in time to report what was not sent. PutEvents (in
//! `publish`) and SendMessageBatch (in `dead_letter`) each say only how to
//! pack and make one call.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::time::Instant;

/// What one call did to one of the items it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome<R> {
    /// Final: sent, or refused for good.
    Done(R),
    /// Failed in a way that may pass: send it again.
    Retry(String),
}

/// What one call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome<R> {
    /// Each item's outcome, in the call's order.
    Items(Vec<ItemOutcome<R>>),
    /// The whole call failed in a way that may pass: every item is sent again.
    Transient(String),
    /// The whole call was refused for something in the request. One item may have spoiled
    /// it: a call of several is split and each item sent alone; alone, this is its result.
    Refused(R),
    /// The call cannot be made now (weir's own credentials or setup, or no time left): its
    /// items end unsent, not retried here.
    Abandoned(String),
}

/// How to send items of one kind in batched calls.
pub trait BatchCall {
    /// Each item's final result.
    type Result: Clone;
    /// The API called, for log lines.
    const NAME: &'static str;
    /// Groups `pending` (indices, in order) into calls.
    fn pack(&self, pending: &[usize]) -> Vec<Vec<usize>>;
    /// An item's size, as the call counts it (for the call statistics).
    fn size(&self, item: usize) -> usize;
    /// Makes one call carrying `items`, within `remaining`.
    fn call(
        &self,
        items: &[usize],
        remaining: Duration,
    ) -> impl Future<Output = CallOutcome<Self::Result>> + Send;
    /// The result of an item that was never sent, or still failing when time ran out.
    fn unsent(&self, reason: String) -> Self::Result;
}

/// Pacing and time limits.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Calls in flight at once.
    pub max_concurrency: usize,
    /// Time kept back before the deadline (never more than a quarter of the time left).
    pub safety_margin: Duration,
    /// First backoff; each round doubles it, capped by `max_backoff`, with full jitter.
    pub base_backoff: Duration,
    /// The longest backoff between rounds.
    pub max_backoff: Duration,
}

/// The least time left before the stop time for which another try is made (when the
/// policy's base backoff is shorter): a call needs some time to be answered.
const MIN_TIME_FOR_A_TRY: Duration = Duration::from_millis(10);

/// Every item's result, in order, and the calls it took.
#[derive(Debug)]
pub struct Sent<R> {
    /// One result per item, in the items' order.
    pub results: Vec<R>,
    /// Calls made, including re-sends.
    pub calls: usize,
    /// Calls that re-sent items after a failure.
    pub retry_calls: usize,
    /// Items re-sent after a failure.
    pub retried_items: usize,
    /// Items and bytes of each call.
    pub call_sizes: Vec<(usize, usize)>,
}

/// Sends every item whose entry in `results` is `None` (the others are already decided)
/// with `caller`, re-sending transient failures until `deadline` less the safety margin.
/// Every item ends with a result.
pub async fn drive<C: BatchCall + Sync>(
    caller: &C,
    mut results: Vec<Option<C::Result>>,
    policy: RetryPolicy,
    deadline: Instant,
) -> Sent<C::Result> {
    let mut sent = Sent {
        results: Vec::new(),
        calls: 0,
        retry_calls: 0,
        retried_items: 0,
        call_sizes: Vec::new(),
    };
    let stop_at = stop_before(deadline, policy.safety_margin);
    let mut last_reason: Vec<Option<String>> = vec![None; results.len()];
    let mut pending: Vec<usize> = (0..results.len())
        .filter(|&i| results[i].is_none())
        .collect();
    let mut singles: Vec<usize> = Vec::new();
    let mut round = 0u32;
    while !pending.is_empty() || !singles.is_empty() {
        let mut calls = caller.pack(&pending);
        calls.extend(singles.drain(..).map(|i| vec![i]));
        let remaining = stop_at.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            for i in calls.into_iter().flatten() {
                last_reason[i] =
                    Some("the invocation's time ran out before it could be sent".to_owned());
            }
            break;
        }
        if round > 0 {
            sent.retry_calls += calls.len();
            sent.retried_items += calls.iter().map(Vec::len).sum::<usize>();
        }
        sent.calls += calls.len();
        for call in &calls {
            let bytes = call.iter().map(|&i| caller.size(i)).sum();
            sent.call_sizes.push((call.len(), bytes));
        }
        let outcomes: Vec<(Vec<usize>, CallOutcome<C::Result>)> = futures::stream::iter(calls)
            .map(|call| async move {
                let outcome = caller.call(&call, remaining).await;
                (call, outcome)
            })
            .buffer_unordered(policy.max_concurrency.max(1))
            .collect()
            .await;
        let mut again = Vec::new();
        for (call, outcome) in outcomes {
            match outcome {
                CallOutcome::Items(items) => {
                    for (&i, item) in call.iter().zip(items) {
                        match item {
                            ItemOutcome::Done(r) => results[i] = Some(r),
                            ItemOutcome::Retry(reason) => {
                                last_reason[i] = Some(reason);
                                again.push(i);
                            }
                        }
                    }
                }
                CallOutcome::Transient(reason) => {
                    for &i in &call {
                        last_reason[i] = Some(reason.clone());
                        again.push(i);
                    }
                }
                CallOutcome::Refused(_) if call.len() > 1 => {
                    tracing::warn!(
                        items = call.len(),
                        "{} refused a call of {}; sending its items one by one to find the one at fault",
                        C::NAME,
                        call.len()
                    );
                    singles.extend(call);
                }
                CallOutcome::Refused(r) => results[call[0]] = Some(r),
                CallOutcome::Abandoned(reason) => {
                    for &i in &call {
                        last_reason[i] = Some(reason.clone());
                    }
                }
            }
        }
        again.sort_unstable();
        pending = again;
        if pending.is_empty() {
            continue;
        }
        round += 1;
        // Back off, but never past the stop time: a backoff longer than the time left is
        // cut to half of it, so the next attempt still has the other half to be answered.
        // Only when less than one base backoff is left is there no time for another try.
        let left = stop_at.saturating_duration_since(Instant::now());
        if left < policy.base_backoff.max(MIN_TIME_FOR_A_TRY) {
            tracing::warn!(
                items = pending.len(),
                "{} still failing when the invocation's time ran out",
                C::NAME
            );
            break;
        }
        let backoff = full_jitter(policy.base_backoff, policy.max_backoff, round);
        tokio::time::sleep(backoff.min(left / 2)).await;
    }
    sent.results = results
        .into_iter()
        .zip(last_reason)
        .map(|(r, reason)| {
            r.unwrap_or_else(|| caller.unsent(reason.unwrap_or_else(|| "not sent".to_owned())))
        })
        .collect();
    sent
}

/// Full jitter: a uniform wait in [0, min(max, base · 2^round)].
pub fn full_jitter(base: Duration, max: Duration, round: u32) -> Duration {
    let cap = base.saturating_mul(1u32 << round.min(16)).min(max);
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// Greedy packing in order: each group holds at most `max_count` items and `max_bytes`
/// (an item larger than `max_bytes` goes alone).
pub fn pack(
    pending: &[usize],
    size: impl Fn(usize) -> usize,
    max_count: usize,
    max_bytes: usize,
) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for &i in pending {
        let s = size(i);
        match groups.last_mut() {
            Some(g) if g.len() < max_count && bytes + s <= max_bytes => {
                g.push(i);
                bytes += s;
            }
            _ => {
                groups.push(vec![i]);
                bytes = s;
            }
        }
    }
    groups
}

/// When to stop trying: `margin` before the deadline, but keeping at least three quarters
/// of the time left for trying.
pub fn stop_before(deadline: Instant, margin: Duration) -> Instant {
    let left = deadline.saturating_duration_since(Instant::now());
    deadline - margin.min(left / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_fills_groups_by_count_then_bytes() {
        let all: Vec<usize> = (0..25).collect();
        let lens: Vec<usize> = pack(&all, |_| 1, 10, 100).iter().map(Vec::len).collect();
        assert_eq!(lens, [10, 10, 5]);
        let sizes = [60, 50, 40, 200, 10];
        let groups = pack(&[0, 1, 2, 3, 4], |i| sizes[i], 10, 100);
        assert_eq!(groups, [vec![0], vec![1, 2], vec![3], vec![4]]);
    }

    /// A call that always fails transiently, noting when each attempt was made.
    struct AlwaysThrottled {
        attempts: std::sync::Mutex<Vec<Instant>>,
    }

    impl BatchCall for AlwaysThrottled {
        type Result = Result<(), String>;
        const NAME: &'static str = "Throttled";

        fn pack(&self, pending: &[usize]) -> Vec<Vec<usize>> {
            vec![pending.to_vec()]
        }

        fn size(&self, _item: usize) -> usize {
            1
        }

        async fn call(&self, _items: &[usize], _remaining: Duration) -> CallOutcome<Self::Result> {
            if let Ok(mut a) = self.attempts.lock() {
                a.push(Instant::now());
            }
            CallOutcome::Transient("throttled".into())
        }

        fn unsent(&self, reason: String) -> Self::Result {
            Err(reason)
        }
    }

    /// Issue 23: the loop gave up as soon as the next random backoff would pass the stop
    /// time, leaving up to `max_backoff` of the budget unused. It must back off no later
    /// than the stop time and keep trying until then. (Paused time: nothing really sleeps.)
    #[tokio::test(start_paused = true)]
    async fn retries_use_the_whole_budget_up_to_the_stop_time() {
        for seed in 0..20 {
            fastrand::seed(seed);
            let caller = AlwaysThrottled {
                attempts: std::sync::Mutex::new(Vec::new()),
            };
            let start = Instant::now();
            let deadline = start + Duration::from_secs(10);
            let policy = RetryPolicy {
                max_concurrency: 1,
                safety_margin: Duration::ZERO,
                base_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(5),
            };
            let sent = drive(&caller, vec![None, None], policy, deadline).await;
            assert!(
                sent.results
                    .iter()
                    .all(|r| r.as_ref().is_err_and(|e| e == "throttled")),
                "{:?}",
                sent.results
            );
            let attempts = caller
                .attempts
                .lock()
                .map(|a| a.clone())
                .unwrap_or_default();
            let last = attempts.last().copied().unwrap_or(start);
            // The last attempt comes within one base backoff of the stop time, never after.
            assert!(
                last >= deadline - Duration::from_millis(50) && last <= deadline,
                "seed {seed}: last of {} attempts at {:?} of a 10 s budget",
                attempts.len(),
                last - start
            );
            assert!(
                Instant::now() <= deadline,
                "seed {seed}: ran past the deadline"
            );
        }
    }

    #[test]
    fn jitter_stays_under_its_cap() {
        for round in 0..20 {
            let d = full_jitter(Duration::from_millis(10), Duration::from_millis(500), round);
            assert!(d <= Duration::from_millis(500));
        }
        assert!(
            full_jitter(Duration::from_millis(10), Duration::from_secs(5), 0)
                <= Duration::from_millis(10)
        );
    }
}
