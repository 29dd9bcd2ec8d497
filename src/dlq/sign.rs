//! Standard Webhooks signing (<https://www.standardwebhooks.com>): `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
//! one signature per secret while secrets rotate.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Signing keys, decoded from `whsec_<base64>` secrets. Debug never shows them.
#[derive(Clone)]
pub struct Signer {
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} key(s))", self.keys.len())
    }
}

/// Why a signing secret variable holds no usable secrets.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("secret #{index} in {origin} is not whsec_<base64>: {source}")]
    NotBase64 {
        origin: String,
        index: usize,
        #[source]
        source: base64::DecodeError,
    },
    #[error("secret #{index} in {origin} is empty")]
    Empty { origin: String, index: usize },
    #[error("{origin} holds no signing secret; set it to whsec_<base64>")]
    NoSecret { origin: String },
}

impl Signer {
    /// Parses one or more secrets separated by whitespace or commas (several during a rotation:
    /// receivers accept any of the signatures). `whsec_` is optional; the rest is base64.
    /// `origin` (the variable holding them) names them in errors.
    pub fn parse(secrets: &str, origin: &str) -> Result<Signer, SignError> {
        let mut keys = Vec::new();
        for (i, secret) in secrets.split([' ', ',', '\n', '\t']).filter(|s| !s.is_empty()).enumerate() {
            crate::redact::register(secret);
            let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
            let key = STANDARD.decode(b64).map_err(|source| SignError::NotBase64 {
                origin: origin.to_string(),
                index: i + 1,
                source,
            })?;
            if key.is_empty() {
                return Err(SignError::Empty { origin: origin.to_string(), index: i + 1 });
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(SignError::NoSecret { origin: origin.to_string() });
        }
        Ok(Signer { keys })
    }

    /// The `webhook-signature` header value for one message.
    pub fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        self.keys
            .iter()
            .map(|key| {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(timestamp.to_string().as_bytes());
                mac.update(b".");
                mac.update(body);
                format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specification_example() {
        // The example of the Standard Webhooks reference libraries.
        let signer = Signer::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "test").unwrap();
        let sig = signer.signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn one_signature_per_secret_and_bad_secrets_named() {
        let signer = Signer::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_c2Vjb25k", "SIGNING").unwrap();
        assert_eq!(signer.signature("a", 1, b"x").split(' ').count(), 2);
        let err = Signer::parse("whsec_MfKQ whsec_!!", "SIGNING").unwrap_err().to_string();
        assert!(err.contains("secret #2 in SIGNING"), "{err}");
        assert!(Signer::parse("  ", "SIGNING").unwrap_err().to_string().contains("no signing secret"));
    }
}
