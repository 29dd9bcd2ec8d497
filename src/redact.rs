//! Secret redaction. Secrets are masked by structure first: the password of any URL, wherever it
//! appears, and every value the process learns is secret (typed secrets, `secret` parameters,
//! configured secrets, `.env` values) is registered here before the first byte of output. Every
//! sink — stdout, stderr, tables, JSON reports, journals, the audit log, report files, metrics
//! files, log lines — masks its data through this module *before* formatting it, so a table that
//! wraps a cell or a serializer that escapes a string never splits a secret past the mask.
//!
//! Masking by value is the safety net, and it must not corrupt text. A registered value of 12 or
//! more characters is masked wherever it stands. A shorter one (a weak secret such as `admin`) is
//! masked only as a whole token, bounded by non-alphanumeric characters, and never inside an
//! identifier (a set name, a backup id, an object key, a check or step id): those are matched on by
//! scripts, so they are printed exactly, and an identifier that would itself hold a secret is
//! refused where it is given ([`check_identifier`]).

use std::borrow::Cow;
#[cfg(not(test))]
use std::sync::RwLock;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

pub const MASK: &str = "***";

/// Secrets shorter than this are not registered: masking "a" everywhere would mangle output
/// while protecting nothing.
const MIN_SECRET_LEN: usize = 4;

/// Secrets shorter than this are masked only as whole tokens and never inside identifiers.
const ANYWHERE_LEN: usize = 12;

/// The registered secrets, longest first, as a shared snapshot: masking (on every line, cell and
/// JSON string) only clones the `Arc`; registering, which is rare, replaces the snapshot.
/// Process-wide; each unit-test thread has its own, so tests that register weak secrets cannot
/// mask another test's text.
type Snapshot = Arc<Vec<String>>;

#[cfg(not(test))]
fn registry() -> &'static RwLock<Snapshot> {
    static SECRETS: OnceLock<RwLock<Snapshot>> = OnceLock::new();
    SECRETS.get_or_init(Default::default)
}

#[cfg(not(test))]
fn secrets() -> Snapshot {
    registry().read().unwrap_or_else(|e| e.into_inner()).clone()
}

#[cfg(not(test))]
fn update(f: impl FnOnce(&mut Vec<String>)) {
    let mut guard = registry().write().unwrap_or_else(|e| e.into_inner());
    f(Arc::make_mut(&mut guard));
}

#[cfg(test)]
thread_local!(static SECRETS: std::cell::RefCell<Snapshot> = Default::default());

#[cfg(test)]
fn secrets() -> Snapshot {
    SECRETS.with(|s| s.borrow().clone())
}

#[cfg(test)]
fn update(f: impl FnOnce(&mut Vec<String>)) {
    SECRETS.with(|s| f(Arc::make_mut(&mut s.borrow_mut())));
}

/// Registers a secret value (and its percent-encoded form, as it appears inside URLs).
pub fn register(secret: &str) {
    if secret.chars().count() < MIN_SECRET_LEN || secret == MASK {
        return;
    }
    let encoded = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>();
    let known = secrets();
    if known.iter().any(|s| *s == secret) && known.contains(&encoded) {
        return;
    }
    update(|secrets| {
        let mut added = false;
        for value in [secret.to_string(), encoded] {
            if !secrets.contains(&value) {
                secrets.push(value);
                added = true;
            }
        }
        // Longest first, so a secret that contains another is masked whole.
        if added {
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    });
}

/// Registers the password of every URL in `text` (`scheme://user:password@…`), percent-decoded
/// and as written, so the bare password is masked wherever else it appears.
pub fn register_urls_in(text: &str) {
    if !text.contains("://") {
        return;
    }
    for caps in url_userinfo().captures_iter(text) {
        let written = &caps[2];
        if written.is_empty() {
            continue;
        }
        let decoded = url::form_urlencoded::parse(format!("p={}", written.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| written.to_string());
        register(&decoded);
        register(written);
    }
}

/// Registers the passwords of every URL in any string of `value`.
pub fn register_urls_in_json(value: &Value) {
    match value {
        Value::String(s) => register_urls_in(s),
        Value::Array(items) => items.iter().for_each(register_urls_in_json),
        Value::Object(map) => map.values().for_each(register_urls_in_json),
        _ => {}
    }
}

/// `scheme://user:` then the password up to `@`.
fn url_userinfo() -> &'static regex_lite::Regex {
    static RE: OnceLock<regex_lite::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex_lite::Regex::new(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:]*:)([^\s@/]*)@").expect("valid pattern")
    })
}

/// Masks URL passwords by structure, then every registered secret: long ones anywhere, short
/// ones as whole tokens. For text that is not an identifier.
pub fn redact(text: &str) -> Cow<'_, str> {
    mask(text, true)
}

/// Masks URL passwords and registered secrets of 12 or more characters: for identifiers, which a
/// weak secret must never alter.
pub fn redact_identifier(text: &str) -> Cow<'_, str> {
    mask(text, false)
}

/// Whether `text` holds a secret that [`redact`] would mask.
pub fn contains_secret(text: &str) -> bool {
    matches!(redact(text), Cow::Owned(_))
}

/// An identifier (set name, step id, …) that would print a secret.
#[derive(Debug, thiserror::Error)]
#[error("{what} matches a secret this run knows (a password or key given elsewhere), so it cannot be printed; choose another {what}")]
pub struct SecretInIdentifier {
    pub what: String,
}

/// Refuses an identifier that holds a registered secret as a whole token or a URL password:
/// printing it would show the secret, masking it would corrupt it.
pub fn check_identifier(what: &str, value: &str) -> Result<(), SecretInIdentifier> {
    if contains_secret(value) {
        return Err(SecretInIdentifier { what: what.to_string() });
    }
    Ok(())
}

fn mask(text: &str, short_too: bool) -> Cow<'_, str> {
    let mut out: Cow<'_, str> = Cow::Borrowed(text);
    if text.contains("://") {
        register_urls_in(text);
        // By structure first: a URL password of any length, in any field.
        if let Cow::Owned(masked) = url_userinfo().replace_all(text, |caps: &regex_lite::Captures<'_>| {
            if caps[2].is_empty() {
                caps[0].to_string()
            } else {
                format!("{}{MASK}@", &caps[1])
            }
        }) {
            if masked != text {
                out = Cow::Owned(masked);
            }
        }
    }
    let secrets = secrets();
    for secret in secrets.iter() {
        let anywhere = secret.chars().count() >= ANYWHERE_LEN;
        if !anywhere && !short_too {
            continue;
        }
        if let Some(masked) = mask_one(&out, secret, anywhere) {
            out = Cow::Owned(masked);
        }
    }
    out
}

/// `text` with `secret` masked (everywhere, or only where it stands as a whole token); `None`
/// when nothing changed.
fn mask_one(text: &str, secret: &str, anywhere: bool) -> Option<String> {
    let mut out = String::new();
    let mut done = 0;
    let mut from = 0;
    while let Some(found) = text[from..].find(secret) {
        let start = from + found;
        let end = start + secret.len();
        let bounded = || {
            let before = text[..start].chars().next_back();
            let after = text[end..].chars().next();
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
        };
        if anywhere || bounded() {
            out.push_str(&text[done..start]);
            out.push_str(MASK);
            done = end;
            from = end;
        } else {
            from = start + secret.chars().next().map_or(1, char::len_utf8);
        }
    }
    (done > 0).then(|| {
        out.push_str(&text[done..]);
        out
    })
}

/// Whether a JSON key names an identifier or a fixed label: ids, set names, object keys, check
/// and step ids, titles and hints written by opsbook itself. Their values are masked only for
/// long secrets and URL passwords.
pub fn is_identifier_key(key: &str) -> bool {
    matches!(
        key,
        "id" | "set"
            | "sets"
            | "key"
            | "keys"
            | "step"
            | "check"
            | "title"
            | "fix"
            | "backup"
            | "backup_id"
            | "object"
            | "prefix"
            | "action"
            | "kind"
            | "version"
    ) || key.ends_with("_id")
        || key.ends_with("_key")
        || key.ends_with("_keys")
}

/// Masks secrets in every string of a JSON document, before it is serialized: identifier
/// fields ([`is_identifier_key`]) only for long secrets. Object keys are never altered.
pub fn redact_json(value: &mut Value) {
    register_urls_in_json(value);
    redact_json_as(value, false);
}

fn redact_json_as(value: &mut Value, identifier: bool) {
    match value {
        Value::String(s) => {
            let masked = if identifier { redact_identifier(s) } else { redact(s) };
            if let Cow::Owned(m) = masked {
                *s = m;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_json_as(v, identifier)),
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                redact_json_as(v, identifier || is_identifier_key(k));
            }
        }
        _ => {}
    }
}

/// Serializes `value` as JSON with secrets masked first (see [`redact_json`]).
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T, pretty: bool) -> serde_json::Result<String> {
    let mut doc = serde_json::to_value(value)?;
    redact_json(&mut doc);
    if pretty {
        serde_json::to_string_pretty(&doc)
    } else {
        serde_json::to_string(&doc)
    }
}

/// A copy of `value` with its secrets masked as [`redact_json`] masks them, for renderers
/// (Markdown, JUnit) that format the data themselves.
pub fn redacted<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    let mut doc = serde_json::to_value(value).expect("report serializes");
    redact_json(&mut doc);
    serde_json::from_value(doc).expect("a masked report reads back")
}

/// The one writer for file sinks (journals, reports, metrics files): replaces `path` atomically
/// with `text`, masking URL passwords and long secrets as a safety net. Callers mask their data
/// first ([`redacted`], [`to_json`]), so weak secrets are already gone and identifiers intact.
pub fn write_file(path: &std::path::Path, text: &str, mode: Option<u32>) -> std::io::Result<()> {
    crate::files::write_atomic(path, redact_identifier(text).as_bytes(), mode)
}

/// Appends one line (a JSON document masked through [`to_json`]) to `path` in a single write,
/// so concurrent appenders never interleave; the file is created with `mode`.
pub fn append_json_line<T: serde::Serialize + ?Sized>(
    path: &std::path::Path,
    value: &T,
    mode: u32,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let line = to_json(value, false).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).mode(mode).open(path)?;
    file.write_all(format!("{}\n", redact_identifier(&line)).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_registered_values_and_url_passwords() {
        register("s3cr3t-value-1");
        register_urls_in("postgres://app:p%40ss-word-2@db:5432/shop");
        let out = redact("token s3cr3t-value-1 and postgres://app:p%40ss-word-2@db and p@ss-word-2");
        assert_eq!(out, "token *** and postgres://app:***@db and ***");
    }

    #[test]
    fn url_passwords_are_masked_without_registration() {
        let out = redact("step output: postgres://postgres:Vzjo5unregistered9@127.0.0.1:5432/shop");
        assert_eq!(out, "step output: postgres://postgres:***@127.0.0.1:5432/shop");
        // …and the bare password is known from then on.
        assert_eq!(redact("pw Vzjo5unregistered9"), "pw ***");
        // A URL without a password is left alone.
        assert_eq!(redact("s3://bucket/prefix and http://host:8080/x"), "s3://bucket/prefix and http://host:8080/x");
    }

    #[test]
    fn short_values_are_not_registered() {
        register("ab");
        assert_eq!(redact("abc ab"), "abc ab");
    }

    #[test]
    fn longer_secret_masked_whole() {
        register("overlap-key");
        register("overlap-key-longer");
        assert_eq!(redact("x overlap-key-longer y"), "x *** y");
    }

    #[test]
    fn short_secrets_only_as_whole_tokens() {
        register("wxyz");
        assert_eq!(redact("wxyzabc abcwxyz wxyz, (wxyz) x=wxyz"), "wxyzabc abcwxyz ***, (***) x=***");
        // Never inside identifiers.
        assert_eq!(redact_identifier("wxyz-set"), "wxyz-set");
        assert!(check_identifier("--set", "wxyz").is_err());
        assert!(check_identifier("--set", "wxyzation").is_ok());
    }

    #[test]
    fn json_identifiers_are_never_rewritten_by_short_secrets() {
        register("qrst");
        let mut doc = serde_json::json!({
            "id": "jwt-qrst", "set": "qrst", "title": "JWT qrst is strong",
            "evidence": "value qrst", "steps": [{"step_id": "qrst", "detail": "qrst"}]
        });
        redact_json(&mut doc);
        assert_eq!(
            doc,
            serde_json::json!({
                "id": "jwt-qrst", "set": "qrst", "title": "JWT qrst is strong",
                "evidence": "value ***", "steps": [{"step_id": "qrst", "detail": "***"}]
            })
        );
        register("a-long-secret-value-42");
        let mut doc = serde_json::json!({"id": "x-a-long-secret-value-42", "key": "postgres://u:tiny@h/db"});
        redact_json(&mut doc);
        assert_eq!(doc, serde_json::json!({"id": "x-***", "key": "postgres://u:***@h/db"}));
    }
}
