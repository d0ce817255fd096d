//! What every AWS call weir makes has in common: how its clients are built, which errors are
//! worth retrying, and how to say what went wrong in one line. Errors are typed on the SDKs'
//! shared types, so EventBridge, SQS and S3 errors are classified alike.
//!
//! Clients come from the standard AWS configuration (environment, profile,
//! `AWS_ENDPOINT_URL`). Where weir retries a call itself (PutEvents and SendMessageBatch,
//! through `retry::drive`), the SDK's own retries are off, so retries never stack and every
//! call made is one weir counts; elsewhere (S3 reads, queue reads) the SDK's standard retries
//! stay on.

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, TlsContext, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder as HttpClientBuilder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The standard AWS configuration, with [`https_client`] for the services and for the
/// credential providers that call out (IMDS, STS).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// The HTTP(S) client every AWS call weir makes goes through: the SDK's own hyper client,
/// with rustls on `ring` instead of the SDK's default `aws-lc` (whose C library, built by
/// cmake, added ~30 s of CPU to every fresh build), trusting the platform's root
/// certificates, honouring `HTTPS_PROXY` and `NO_PROXY` as the SDK's default client does.
/// Plain `http://` endpoints (a local stand-in for AWS) work too.
pub fn https_client() -> SharedHttpClient {
    https_client_trusting(TlsContext::default())
}

/// [`https_client`] with the certificates `context` trusts (the tests' own authority).
fn https_client_trusting(context: TlsContext) -> SharedHttpClient {
    // What the SDK's default-https-client builds, with CryptoMode::Ring: a connector per
    // client's timeouts and sleep, proxies from the environment.
    HttpClientBuilder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .tls_context(context.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// The configuration for an endpoint on this machine that stands in for AWS (a moto server
/// in the tests, the benchmark's zero-latency PutEvents): its URL, `region`, and static
/// credentials, so nothing is read from the environment.
pub fn local_sdk_config(endpoint_url: &str, region: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .endpoint_url(endpoint_url)
        .http_client(https_client())
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

    #[tokio::test]
    async fn every_sdk_config_carries_weirs_https_client() {
        // Without one, an SDK built without default-https-client refuses every request ("a
        // http_client is required"); moto speaks http, so only this test would notice.
        assert!(sdk_config().await.http_client().is_some());
        let local = local_sdk_config("http://127.0.0.1:1", "us-east-1");
        assert!(local.http_client().is_some());
    }

    /// A certificate authority made for this test alone (P-256, valid until 2126) and the
    /// certificate it signed for `localhost` and 127.0.0.1, with that certificate's key: the
    /// local HTTPS server below presents them; they secure nothing else.
    const TEST_AUTHORITY: &str = "\
-----BEGIN CERTIFICATE-----
MIIBljCCATugAwIBAgIUWj+V/gKK9DUB79pT8kbaZUdmrIUwCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMd2VpciB0ZXN0IENBMCAXDTI2MTIwNzIzNDcwN1oYDzIxMjYx
MTEzMjM0NzA3WjAXMRUwEwYDVQQDDAx3ZWlyIHRlc3QgQ0EwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAASGG3B7WnRUMVtWXxwC7KMnHrGt3VsH7c/fszG1oFWMN8gM
iwNvy6bh9atoeuarMN/5BL33X8qdC4ZQeYGSGoCJo2MwYTAdBgNVHQ4EFgQUv/gg
OnLqRfiNHwzVeCxHj97hCTYwHwYDVR0jBBgwFoAUv/ggOnLqRfiNHwzVeCxHj97h
CTYwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAgQwCgYIKoZIzj0EAwID
SQAwRgIhAKGFrQbaszH7Ak9YQSle7Fph2I4KCZ3YbhKSnu9z50BZAiEApxpkT0FM
yso9jZv3ycIIBLTYCq0wKttw9wF8o52dG8U=
-----END CERTIFICATE-----
";
    const LOCALHOST_CERTIFICATE: &str = "\
-----BEGIN CERTIFICATE-----
MIIBvzCCAWWgAwIBAgIUbSmXtdEDpigl5VhsD5xBXul2rtYwCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMd2VpciB0ZXN0IENBMCAXDTI2MTIwNzIzNDczOFoYDzIxMjYx
MTEzMjM0NzM4WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggq
hkjOPQMBBwNCAASDJ/7A/JYd/hArzLbFLZo9dn3EeEiqe/l/+B82hGgepIlUop4j
J2trY6lS4ndCXWNZJISzHNVRNLc/wNn56VI/o4GPMIGMMAkGA1UdEwQCMAAwGgYD
VR0RBBMwEYIJbG9jYWxob3N0hwR/AAABMBMGA1UdJQQMMAoGCCsGAQUFBwMBMA4G
A1UdDwEB/wQEAwIHgDAdBgNVHQ4EFgQUqj4VtP/AFKJaL014OmvH3Yz6S/wwHwYD
VR0jBBgwFoAUv/ggOnLqRfiNHwzVeCxHj97hCTYwCgYIKoZIzj0EAwIDSAAwRQIh
AJDO8QrRehz75n/njx4pQrhrQGQpmvp+3NSV9stJ1ke2AiBqs+E/Qs4Fpkmc5MrG
HjNoaN5HWU9U4d4MdVCrn0co/A==
-----END CERTIFICATE-----
";
    const LOCALHOST_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgIojkuFJ/hejgee32
14lXJ2sRdXjrdeBIZ/VrBlYMqOKhRANCAASDJ/7A/JYd/hArzLbFLZo9dn3EeEiq
e/l/+B82hGgepIlUop4jJ2trY6lS4ndCXWNZJISzHNVRNLc/wNn56VI/
-----END PRIVATE KEY-----
";

    /// A one-request-per-connection HTTPS server on 127.0.0.1 (rustls on ring, the test
    /// certificate) that answers every request with EventBridge's DescribeEventBus response
    /// for a bus named "weir" and sends each request's head, lower-cased, on the channel.
    /// Connections whose handshake fails are dropped.
    async fn https_event_bridge() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let certificate =
            CertificateDer::from_pem_slice(LOCALHOST_CERTIFICATE.as_bytes()).expect("a cert");
        let key = PrivateKeyDer::from_pem_slice(LOCALHOST_KEY.as_bytes()).expect("a key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)
        .expect("a server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let port = listener.local_addr().expect("an address").port();
        let (heads, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break 0,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while request.len() < head_end + length {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"Name":"weir","Arn":"arn:aws:events:us-east-1:123456789012:event-bus/weir"}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
                let _ = heads.send(head);
            }
        });
        (port, received)
    }

    #[tokio::test]
    async fn an_sdk_call_over_https_goes_through_rustls_on_ring_and_checks_the_certificate() {
        let (port, mut heads) = https_event_bridge().await;
        let endpoint = format!("https://localhost:{port}");
        let trusting = TlsContext::builder()
            .with_trust_store(
                tls::TrustStore::empty().with_pem_certificate(TEST_AUTHORITY.as_bytes()),
            )
            .build()
            .expect("a TLS context");
        let sdk = local_sdk_config(&endpoint, "us-east-1")
            .into_builder()
            .http_client(https_client_trusting(trusting))
            .build();
        let bus = eventbridge(&sdk)
            .describe_event_bus()
            .name("weir")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}", describe_sdk_error(&e)));
        assert_eq!(bus.name(), Some("weir"));
        let head = heads.recv().await.expect("the request reached the server");
        assert!(
            head.contains("x-amz-target: awsevents.describeeventbus"),
            "{head}"
        );

        // The client every SdkConfig carries trusts the platform's roots, not the test's
        // authority: the handshake fails and no request reaches the server.
        let refused = eventbridge(&local_sdk_config(&endpoint, "us-east-1"))
            .describe_event_bus()
            .name("weir")
            .send()
            .await
            .expect_err("a certificate no root signed is refused");
        let chain = format!("{:?}", refused).to_ascii_lowercase();
        assert!(chain.contains("certificate"), "{chain}");
        assert!(heads.try_recv().is_err());
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
