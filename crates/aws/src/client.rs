//! What every AWS call weir makes has in common: how its clients are built, which errors are
//! worth retrying, and how to say what went wrong in one line. Errors are typed on the SDKs'
//! shared types, so EventBridge, SQS and S3 errors are classified alike.
//!
//! Clients come from the standard AWS configuration (environment, profile,
//! `AWS_ENDPOINT_URL`). Where weir retries a call itself (PutEvents and SendMessageBatch,
//! through `retry::drive`), the SDK's own retries are off, so retries never stack and every
//! call made is one weir counts; elsewhere (S3 reads, queue reads) the SDK's standard retries
//! stay on.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The standard AWS configuration.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The configuration for an endpoint on this machine that stands in for AWS (a moto server
/// in the tests, the benchmark's zero-latency PutEvents): its URL, `region`, and static
/// credentials, so nothing is read from the environment.
pub fn local_sdk_config(endpoint_url: &str, region: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .endpoint_url(endpoint_url)
        .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
            aws_sdk_sqs::config::Credentials::new("local", "local", None, None, "weir-local"),
        ))
        .build()
}

/// EventBridge, for PutEvents (retried by weir) and the bus check.
pub fn eventbridge(sdk: &aws_config::SdkConfig) -> aws_sdk_eventbridge::Client {
    let conf = aws_sdk_eventbridge::config::Builder::from(sdk)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_eventbridge::Client::from_conf(conf)
}

/// SQS for sending dead letters (retried by weir).
pub fn sqs_for_dead_letters(sdk: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    let conf = aws_sdk_sqs::config::Builder::from(sdk)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

/// SQS for reading and deleting queue messages (redrive), with the SDK's retries.
pub fn sqs(sdk: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(sdk)
}

/// S3 for manifests and plugins, with the SDK's retries.
pub fn s3(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::new(sdk)
}

/// DynamoDB's codes for "too fast for the table's capacity or the account's limits".
const THROUGHPUT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
];

/// Whether an SDK error may go away on its own: throttling, a 5xx, a timeout, a broken
/// connection. Anything else is a refusal that retrying will not change.
pub fn is_transient<E>(e: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    match e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or_default();
            status >= 500
                || status == 429
                || code.contains("Throttl")
                || code.starts_with("Internal")
                // DynamoDB's throughput refusals (a Scan of a busy table): HTTP 400.
                || THROUGHPUT_CODES.contains(&code)
        }
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    }
}

/// What to say when no region is configured: what is missing and the ways to give it.
pub const NO_REGION: &str = "no AWS region configured: set AWS_REGION (for example \
     AWS_REGION=us-east-1), or a region in the profile's ~/.aws/config (aws configure)";

/// What to say when no credentials were found: what is missing and the ways to give it.
pub const NO_CREDENTIALS: &str = "no AWS credentials found: set AWS_ACCESS_KEY_ID and \
     AWS_SECRET_ACCESS_KEY, or AWS_PROFILE naming a profile in ~/.aws/credentials (aws \
     configure), or run where a role is attached (Lambda, ECS, EC2)";

/// One line naming the error's code, message and status, whatever layer it came from. A
/// request that never left because the configuration lacks a region or credentials, or
/// could not reach its endpoint, says what is missing and how to give it ([`NO_REGION`],
/// [`NO_CREDENTIALS`]) instead of the SDK's chain of provider errors.
pub fn describe_sdk_error<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e {
        SdkError::ServiceError(se) => format!(
            "{}: {}",
            se.err().code().unwrap_or("service error"),
            se.err().message().unwrap_or_default()
        ),
        other => {
            let mut chain = vec![other.to_string()];
            let mut source = std::error::Error::source(other);
            while let Some(inner) = source {
                chain.push(inner.to_string());
                source = inner.source();
            }
            let unreachable = matches!(other, SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout())
                || matches!(other, SdkError::TimeoutError(_));
            missing_configuration(&chain, unreachable).unwrap_or_else(|| chain.join(": "))
        }
    }
}

/// The one line for a request the configuration stopped before it was sent (`chain`: the
/// error's messages, outermost first), or `None` when the configuration is not the cause.
fn missing_configuration(chain: &[String], unreachable: bool) -> Option<String> {
    let text = chain.join(": ").to_ascii_lowercase();
    if text.contains("missing region") {
        return Some(NO_REGION.to_owned());
    }
    if text.contains("loading credentials")
        || text.contains("no credentials")
        || text.contains("credentials provider")
    {
        return Some(NO_CREDENTIALS.to_owned());
    }
    if unreachable {
        let cause = chain.last().map(String::as_str).unwrap_or("no answer");
        return Some(format!(
            "cannot reach the AWS endpoint ({cause}): check the network, the region, and \
             AWS_ENDPOINT_URL if set (it replaces the region's endpoint)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::scan::ScanError;
    use aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn refused(code: &str, status: u16) -> SdkError<ScanError, HttpResponse> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("refused")
            .build();
        let err = ScanError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .message("refused")
                .meta(meta)
                .build(),
        );
        let raw = HttpResponse::new(
            StatusCode::try_from(status).expect("status"),
            SdkBody::empty(),
        );
        SdkError::service_error(err, raw)
    }

    #[test]
    fn requests_the_configuration_stopped_say_what_is_missing_in_one_line() {
        let chain = |parts: &[&str]| parts.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let region = chain(&[
            "dispatch failure",
            "other",
            "Invalid Configuration: Missing Region",
        ]);
        assert_eq!(
            missing_configuration(&region, false).as_deref(),
            Some(NO_REGION)
        );
        let credentials = chain(&[
            "dispatch failure",
            "other",
            "an error occurred while loading credentials",
            "failed to load IMDS session token",
        ]);
        assert_eq!(
            missing_configuration(&credentials, false).as_deref(),
            Some(NO_CREDENTIALS)
        );
        let refused = chain(&[
            "dispatch failure",
            "io error",
            "Connection refused (os error 111)",
        ]);
        let line = missing_configuration(&refused, true).expect("an endpoint line");
        assert!(line.contains("AWS_ENDPOINT_URL") && line.contains("Connection refused"));
        assert_eq!(missing_configuration(&refused, false), None);
        for line in [NO_REGION, NO_CREDENTIALS] {
            assert!(!line.contains('\n') && line.contains("AWS_"), "{line}");
        }
    }

    #[test]
    fn throughput_refusals_and_throttling_are_transient_other_refusals_are_not() {
        assert!(is_transient(&refused(
            "ProvisionedThroughputExceededException",
            400
        )));
        assert!(is_transient(&refused("RequestLimitExceeded", 400)));
        assert!(is_transient(&refused("ThrottlingException", 400)));
        assert!(is_transient(&refused("InternalServerError", 500)));
        assert!(!is_transient(&refused("ValidationException", 400)));
        assert!(!is_transient(&refused("ResourceNotFoundException", 400)));
    }
}
