//! `[destinations]`: API destinations `weir infra` turns into CloudFormation, checked
//! against the tenants that may use them.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::problems::child;
use super::{DEFAULT_TENANT, ManifestProblem, ProblemKind, TenantSpec};

/// One `[destinations.<name>]` section: an API destination, its connection, and the rule
/// that sends it the events plugins address to `<name>`. `weir infra` turns it into
/// CloudFormation; the pipeline refuses events for destinations a tenant may not use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSpec {
    /// The HTTPS URL EventBridge calls; each `*` is filled from `path_parameters`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The URL kept in Secrets Manager instead, for endpoints whose URL is the credential
    /// (a Slack incoming webhook).
    #[serde(default)]
    pub endpoint_secret: Option<SecretRef>,
    /// The HTTP method: GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS.
    pub method: String,
    /// How EventBridge authenticates to the endpoint.
    pub auth: DestinationAuth,
    /// Requests per second EventBridge sends at most (its default: 300).
    #[serde(default)]
    pub rate_limit_per_second: Option<u32>,
    /// How long and how often EventBridge retries 429s, 5xx and timeouts.
    #[serde(default)]
    pub retry: RetrySpec,
    /// The detail types this destination takes.
    pub detail_types: Vec<String>,
    /// Only this tenant's events; the other tenants may not use the destination.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The part of the event sent as the request body (default `$.detail.payload`: the
    /// plugin's payload exactly).
    #[serde(default)]
    pub input_path: Option<String>,
    /// JSON paths into the event filling the endpoint's `*`s, in order.
    #[serde(default)]
    pub path_parameters: Vec<String>,
    /// The header carrying the event's `metadata.id` (default `Idempotency-Key`; `""` for
    /// none), so the receiver can drop the redeliveries that at-least-once implies.
    #[serde(default)]
    pub idempotency_header: Option<String>,
}

/// A value kept in AWS Secrets Manager: the secret's name or ARN, and optionally the key
/// of a JSON secret. Only the reference ever appears in the manifest and the template.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// The secret's name or ARN.
    pub secret: String,
    /// The key within a JSON secret; without it the whole secret string is the value.
    #[serde(default)]
    pub key: Option<String>,
}

/// A connection's authorization: the three kinds EventBridge offers, or `none` for
/// endpoints that authenticate by their URL (EventBridge still requires a connection).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DestinationAuth {
    /// OAuth 2.0 client credentials: EventBridge fetches and caches the token.
    OauthClientCredentials {
        /// The authorization server's token endpoint.
        token_url: String,
        /// The OAuth client id.
        client_id: String,
        /// The OAuth client secret.
        client_secret: SecretRef,
        /// The scope requested with the token, if any.
        #[serde(default)]
        scope: Option<String>,
    },
    /// A header holding a key.
    ApiKey {
        /// The header's name.
        header: String,
        /// The key sent in the header.
        value: SecretRef,
    },
    /// HTTP Basic.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: SecretRef,
    },
    /// No credential beyond the URL.
    None,
}

/// An API destination target's RetryPolicy. The defaults are EventBridge's own maximums.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Retries after the first attempt, 0 to 185.
    #[serde(default = "RetrySpec::max_attempts")]
    pub attempts: u32,
    /// How long an event is retried, 60 to 86,400 seconds.
    #[serde(default = "RetrySpec::max_age")]
    pub max_age_secs: u32,
}

impl RetrySpec {
    /// EventBridge's largest MaximumRetryAttempts.
    pub const MAX_ATTEMPTS: u32 = 185;
    /// EventBridge's largest MaximumEventAgeInSeconds (24 hours).
    pub const MAX_AGE_SECS: u32 = 86_400;
    /// EventBridge's smallest MaximumEventAgeInSeconds.
    pub const MIN_AGE_SECS: u32 = 60;

    fn max_attempts() -> u32 {
        Self::MAX_ATTEMPTS
    }

    fn max_age() -> u32 {
        Self::MAX_AGE_SECS
    }
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            attempts: Self::MAX_ATTEMPTS,
            max_age_secs: Self::MAX_AGE_SECS,
        }
    }
}

/// The header an idempotency id travels in unless a destination says otherwise.
pub const DEFAULT_IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// The body an API destination receives unless a destination says otherwise.
pub const DEFAULT_INPUT_PATH: &str = "$.detail.payload";

/// HTTP methods an API destination may use (EventBridge takes any but CONNECT and TRACE).
pub const DESTINATION_METHODS: &[&str] =
    &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Headers EventBridge does not let a target set.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "content-encoding",
    "content-length",
    "host",
    "max-forwards",
    "te",
    "transfer-encoding",
    "trailer",
    "upgrade",
    "via",
    "www-authenticate",
    "x-forwarded-for",
];

impl DestinationSpec {
    /// The body's JSON path.
    pub fn input_path(&self) -> &str {
        self.input_path.as_deref().unwrap_or(DEFAULT_INPUT_PATH)
    }

    /// The idempotency header's name, if the destination sends one.
    pub fn idempotency_header(&self) -> Option<&str> {
        match self.idempotency_header.as_deref() {
            None => Some(DEFAULT_IDEMPOTENCY_HEADER),
            Some("") => None,
            Some(h) => Some(h),
        }
    }
}

/// Whether `name` can name a destination: it becomes part of CloudFormation logical ids.
fn is_destination_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.bytes().any(|b| b.is_ascii_alphanumeric())
}

/// A JSON path EventBridge evaluates: `$` then `.name` segments of letters, digits, `-`, `_`.
fn is_simple_json_path(path: &str) -> bool {
    path.strip_prefix('$').is_some_and(|rest| {
        rest.split('.').skip(1).all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }) && (rest.is_empty() || rest.starts_with('.'))
    })
}

/// Text that may sit inside a CloudFormation dynamic reference and a header or URL:
/// printable ASCII without spaces or braces.
fn is_plain_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
}

fn secret_problems(what: &str, secret: &SecretRef, problems: &mut Vec<ManifestProblem>) {
    if !is_plain_token(&secret.secret) {
        problems.push(ManifestProblem::new(
            format!("{what}.secret"),
            ProblemKind::Malformed,
            format!(
                "must be a Secrets Manager secret name or ARN, found {:?}",
                secret.secret
            ),
        ));
    }
    if let Some(key) = &secret.key
        && (!is_plain_token(key) || key.contains(':'))
    {
        problems.push(ManifestProblem::new(
            format!("{what}.key"),
            ProblemKind::Malformed,
            format!("must be a JSON key without spaces, braces or ':', found {key:?}"),
        ));
    }
}

fn https_problems(what: String, url: &str, problems: &mut Vec<ManifestProblem>) {
    let host = url
        .strip_prefix("https://")
        .map(|r| r.split('/').next().unwrap_or_default());
    if host.is_none_or(str::is_empty) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        problems.push(ManifestProblem::new(
            what,
            ProblemKind::Malformed,
            format!("must be an https:// URL (API destinations call public HTTPS endpoints only), found {url:?}"),
        ));
    }
}

/// Everything in `[destinations]` that cannot work, and every tenant allow-list that
/// names a destination it may not use.
pub(super) fn destination_problems(
    destinations: &BTreeMap<String, DestinationSpec>,
    tenants: &BTreeMap<String, TenantSpec>,
) -> Vec<ManifestProblem> {
    use ProblemKind::{Conflict, Malformed, Missing, OutOfRange, Undefined};
    let mut problems = Vec::new();
    for (name, d) in destinations {
        let what = child("destinations", name);
        let mut push = |key: &str, kind: ProblemKind, message: String| {
            let key = if key.is_empty() {
                what.clone()
            } else {
                format!("{what}.{key}")
            };
            problems.push(ManifestProblem::new(key, kind, message));
        };
        if !is_destination_name(name) {
            push(
                "",
                Malformed,
                "a destination name is 1 to 64 letters, digits, '-' or '_'".to_owned(),
            );
        }
        match (&d.endpoint, &d.endpoint_secret) {
            (Some(url), None) => {
                let wildcards = url.matches('*').count();
                if wildcards != d.path_parameters.len() {
                    push(
                        "path_parameters",
                        Conflict,
                        format!(
                            "has {} values but the endpoint has {wildcards} '*'",
                            d.path_parameters.len()
                        ),
                    );
                }
            }
            (None, Some(_)) => {}
            _ => push(
                "",
                Conflict,
                "must give exactly one of endpoint = \"https://...\" or endpoint_secret = { secret = \"...\", key = \"...\" }".to_owned(),
            ),
        }
        if !DESTINATION_METHODS.contains(&d.method.as_str()) {
            push(
                "method",
                Malformed,
                format!(
                    "must be one of {}, found {:?}",
                    DESTINATION_METHODS.join(", "),
                    d.method
                ),
            );
        }
        match &d.auth {
            DestinationAuth::OauthClientCredentials {
                client_id, scope, ..
            } => {
                if !is_plain_token(client_id) {
                    push(
                        "auth.client_id",
                        Malformed,
                        "is empty or has spaces or braces".to_owned(),
                    );
                }
                if scope
                    .as_deref()
                    .is_some_and(|s| s.trim().is_empty() || s.contains(['{', '}']))
                {
                    push("auth.scope", Malformed, "is empty or has braces".to_owned());
                }
            }
            DestinationAuth::ApiKey { header, .. } => {
                if !is_header_name(header) {
                    push(
                        "auth.header",
                        Malformed,
                        format!("is not an HTTP header name: {header:?}"),
                    );
                }
            }
            DestinationAuth::Basic { username, .. } => {
                if !is_plain_token(username) || username.contains(':') {
                    push(
                        "auth.username",
                        Malformed,
                        "is empty or has spaces, braces or ':'".to_owned(),
                    );
                }
            }
            DestinationAuth::None => {}
        }
        if d.rate_limit_per_second == Some(0) {
            push(
                "rate_limit_per_second",
                OutOfRange,
                "must be at least 1".to_owned(),
            );
        }
        if d.retry.attempts > RetrySpec::MAX_ATTEMPTS {
            push(
                "retry.attempts",
                OutOfRange,
                format!(
                    "must be 0 to {}, found {}",
                    RetrySpec::MAX_ATTEMPTS,
                    d.retry.attempts
                ),
            );
        }
        if !(RetrySpec::MIN_AGE_SECS..=RetrySpec::MAX_AGE_SECS).contains(&d.retry.max_age_secs) {
            push(
                "retry.max_age_secs",
                OutOfRange,
                format!(
                    "must be {} to {}, found {}",
                    RetrySpec::MIN_AGE_SECS,
                    RetrySpec::MAX_AGE_SECS,
                    d.retry.max_age_secs
                ),
            );
        }
        if d.detail_types.is_empty() {
            push(
                "detail_types",
                Missing,
                "must name at least one detail type".to_owned(),
            );
        }
        for (i, t) in d.detail_types.iter().enumerate() {
            if t.is_empty() || t.len() > 128 || t.chars().any(char::is_control) {
                push(
                    &format!("detail_types[{i}]"),
                    Malformed,
                    format!("{t:?} is not a detail type (1 to 128 characters)"),
                );
            }
        }
        if let Some(t) = &d.tenant
            && (t == DEFAULT_TENANT || !tenants.contains_key(t))
        {
            push(
                "tenant",
                Undefined,
                format!("names {t:?}, which is not a tenant with its own [tenants.{t}] entry"),
            );
        }
        let input_path = d.input_path();
        if !is_simple_json_path(input_path) || !input_path.starts_with(DEFAULT_INPUT_PATH) {
            push(
                "input_path",
                Malformed,
                format!(
                    "must be {DEFAULT_INPUT_PATH} or a field inside it (dot notation), found {input_path:?}"
                ),
            );
        }
        for (i, p) in d.path_parameters.iter().enumerate() {
            if !is_simple_json_path(p) || !p.starts_with("$.detail.") {
                push(
                    &format!("path_parameters[{i}]"),
                    Malformed,
                    format!(
                        "{p:?} is not a JSON path into the event's detail ($.detail.payload.id)"
                    ),
                );
            }
        }
        if let Some(h) = d.idempotency_header()
            && !is_header_name(h)
        {
            push(
                "idempotency_header",
                Malformed,
                format!("is not a header EventBridge lets a target set: {h:?}"),
            );
        }
        if let (Some(url), None) = (&d.endpoint, &d.endpoint_secret) {
            https_problems(format!("{what}.endpoint"), url, &mut problems);
        }
        if let Some(secret) = &d.endpoint_secret {
            secret_problems(&format!("{what}.endpoint_secret"), secret, &mut problems);
        }
        match &d.auth {
            DestinationAuth::OauthClientCredentials {
                token_url,
                client_secret,
                ..
            } => {
                https_problems(format!("{what}.auth.token_url"), token_url, &mut problems);
                secret_problems(
                    &format!("{what}.auth.client_secret"),
                    client_secret,
                    &mut problems,
                );
            }
            DestinationAuth::ApiKey { value, .. } => {
                secret_problems(&format!("{what}.auth.value"), value, &mut problems);
            }
            DestinationAuth::Basic { password, .. } => {
                secret_problems(&format!("{what}.auth.password"), password, &mut problems);
            }
            DestinationAuth::None => {}
        }
    }
    if destinations.is_empty() {
        return problems;
    }
    for (tenant_name, tenant) in tenants {
        let key = format!("{}.destinations", child("tenants", tenant_name));
        for allowed in tenant.destinations.iter().flatten() {
            match destinations.get(allowed) {
                None => problems.push(ManifestProblem::new(
                    key.clone(),
                    Undefined,
                    format!("names {allowed:?}, which is not in [destinations]"),
                )),
                Some(d) => {
                    if let Some(owner) = d.tenant.as_ref().filter(|o| *o != tenant_name) {
                        problems.push(ManifestProblem::new(
                            key.clone(),
                            Undefined,
                            format!("names {allowed:?}, which is for tenant {owner:?} only"),
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// An HTTP header name (RFC 9110 token) a target may set.
fn is_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 512
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && !RESERVED_HEADERS.contains(&h.to_ascii_lowercase().as_str())
        && !h.to_ascii_lowercase().starts_with("x-amz")
}
