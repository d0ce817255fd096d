//! What every AWS call weir makes has in common: which errors are worth retrying, and how to
//! say what went wrong in one line. Typed on the SDKs' shared error types, so EventBridge,
//! SQS and S3 errors are classified alike.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

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
        }
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    }
}

/// One line naming the error's code, message and status, whatever layer it came from.
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
            let mut s = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(inner) = source {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                source = inner.source();
            }
            s
        }
    }
}
