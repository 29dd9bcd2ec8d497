//! S3 failures as `StoreError`s: how an SDK error is classified (missing object, unusable
//! store, failed operation) and what to do next about the service errors people meet most.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::ErrorClass;
use crate::store::StoreError;

/// How an SDK failure is classified before the service's code is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The service answered with an error.
    Service,
    /// No usable answer: connection refused, DNS, TLS, timeouts, credentials not found.
    Unreachable,
    /// The request could not be built.
    Local,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    NotFound,
    Class(ErrorClass),
}

/// Codes that mean the store cannot be used as configured: wrong or expired credentials, no
/// permission, no bucket, or the service itself failing.
const UNAVAILABLE_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "AllAccessDisabled",
    "AccountProblem",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "RequestTimeTooSkewed",
    "Unauthorized",
    "NoSuchBucket",
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
];

fn classify(failure: Failure, code: Option<&str>, status: Option<u16>) -> Outcome {
    match failure {
        Failure::Unreachable => return Outcome::Class(ErrorClass::Unavailable),
        Failure::Local => return Outcome::Class(ErrorClass::Failed),
        Failure::Service => {}
    }
    match (code, status) {
        (Some("NoSuchKey" | "NotFound"), _) => Outcome::NotFound,
        (Some("InvalidBucketName"), _) => Outcome::Class(ErrorClass::Usage),
        (Some(code), _) if UNAVAILABLE_CODES.contains(&code) => Outcome::Class(ErrorClass::Unavailable),
        (None, Some(404)) => Outcome::NotFound,
        (_, Some(401 | 403 | 429 | 500..=599)) => Outcome::Class(ErrorClass::Unavailable),
        _ => Outcome::Class(ErrorClass::Failed),
    }
}

/// What to do about the service errors people meet most.
fn next_step(code: &str) -> Option<&'static str> {
    Some(match code {
        "SignatureDoesNotMatch" => "check the secret key: AWS_SECRET_ACCESS_KEY or R2_SECRET_ACCESS_KEY",
        "InvalidAccessKeyId" => "check the access key id: AWS_ACCESS_KEY_ID or R2_ACCESS_KEY_ID",
        "AccessDenied" => "the credentials lack permission for this operation on the bucket",
        "NoSuchBucket" => "create the bucket (opsbook provision) or fix the bucket name in the store URL",
        "InvalidBucketName" => "bucket names are 3-63 lowercase letters, digits, '-' and '.'",
        "RequestTimeTooSkewed" => "this machine's clock is off: sync it (NTP)",
        _ => return None,
    })
}

/// Turns an SDK error into a `StoreError` that names the operation and the object, with the
/// service's code and message (never the request, so never credentials).
pub(crate) fn sdk_error<E>(op: &'static str, resource: String, key: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let (failure, code, message) = match &err {
        SdkError::ServiceError(service) => {
            let (code, text) = (service.err().code(), service.err().message());
            let mut message = match (code, text) {
                (Some(code), Some(text)) => format!("{code}: {text}"),
                (Some(code), None) => code.to_owned(),
                (None, Some(text)) => text.to_owned(),
                (None, None) => format!("HTTP status {}", status.unwrap_or_default()),
            };
            if let Some(hint) = code.and_then(next_step) {
                message = format!("{message} ({hint})");
            }
            (Failure::Service, code.map(str::to_owned), message)
        }
        SdkError::TimeoutError(_) => (Failure::Unreachable, None, format!("timed out{}", causes(&err))),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (Failure::Unreachable, None, format!("cannot reach the S3 endpoint{}", causes(&err)))
        }
        _ => (Failure::Local, None, format!("{err}{}", causes(&err))),
    };
    match classify(failure, code.as_deref(), status) {
        Outcome::NotFound => StoreError::NotFound { op, resource, key: key.to_owned() },
        Outcome::Class(class) => StoreError::S3 { op, resource, code, status, message, class },
    }
}

/// `: cause: deeper cause` for the sources of `err`, skipping repeats (the SDK's wrappers often
/// repeat their source's text).
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = String::new();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !line.is_empty() && !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

pub(super) fn body_error(op: &'static str, resource: String, err: impl std::error::Error) -> StoreError {
    StoreError::S3 {
        op,
        resource,
        code: None,
        status: None,
        message: format!("reading the response body: {err}{}", causes(&err)),
        class: ErrorClass::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        use ErrorClass::*;
        let service = |code, status| classify(Failure::Service, code, status);
        assert_eq!(service(Some("NoSuchKey"), Some(404)), Outcome::NotFound);
        assert_eq!(service(None, Some(404)), Outcome::NotFound);
        assert_eq!(service(Some("NoSuchBucket"), Some(404)), Outcome::Class(Unavailable));
        assert_eq!(service(Some("SignatureDoesNotMatch"), Some(403)), Outcome::Class(Unavailable));
        assert_eq!(service(Some("InvalidAccessKeyId"), Some(403)), Outcome::Class(Unavailable));
        assert_eq!(service(None, Some(403)), Outcome::Class(Unavailable));
        assert_eq!(service(Some("SlowDown"), Some(503)), Outcome::Class(Unavailable));
        assert_eq!(service(Some("InvalidPart"), Some(400)), Outcome::Class(Failed));
        assert_eq!(service(Some("EntityTooSmall"), Some(400)), Outcome::Class(Failed));
        assert_eq!(classify(Failure::Unreachable, None, None), Outcome::Class(Unavailable));
        assert_eq!(classify(Failure::Local, None, None), Outcome::Class(Failed));
    }
}
