//! Secret redaction by value: every secret the process learns is registered here, and every byte
//! that reaches stdout, stderr, logs, reports or audit files passes through `redact`.

use std::borrow::Cow;
use std::sync::{OnceLock, RwLock};

const MASK: &str = "***";

/// Secrets shorter than this are not registered: masking "a" everywhere would mangle output
/// while protecting nothing.
const MIN_SECRET_LEN: usize = 4;

fn registry() -> &'static RwLock<Vec<String>> {
    static SECRETS: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| RwLock::new(Vec::new()))
}

/// Registers a secret value (and its percent-encoded form, as it appears inside URLs).
pub fn register(secret: &str) {
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut secrets = registry().write().unwrap_or_else(|e| e.into_inner());
    let encoded = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>();
    for value in [secret.to_string(), encoded] {
        if !secrets.contains(&value) {
            secrets.push(value);
        }
    }
    // Longest first, so a secret that contains another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Registers the password of a URL (`scheme://user:password@host/...`), if it has one.
pub fn register_url_password(raw: &str) {
    if let Ok(parsed) = url::Url::parse(raw) {
        if let Some(password) = parsed.password() {
            let decoded = url::form_urlencoded::parse(format!("p={password}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| password.to_string());
            register(&decoded);
            register(password);
        }
    }
}

/// Replaces every registered secret in `text` with `***`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = registry().read().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_registered_values_and_url_passwords() {
        register("s3cr3t-value-1");
        register_url_password("postgres://app:p%40ss-word-2@db:5432/shop");
        let out = redact("token s3cr3t-value-1 and postgres://app:p%40ss-word-2@db and p@ss-word-2");
        assert_eq!(out, "token *** and postgres://app:***@db and ***");
    }

    #[test]
    fn short_values_are_not_registered() {
        register("ab");
        assert_eq!(redact("abc"), "abc");
    }

    #[test]
    fn longer_secret_masked_whole() {
        register("overlap-key");
        register("overlap-key-longer");
        assert_eq!(redact("x overlap-key-longer y"), "x *** y");
    }
}
