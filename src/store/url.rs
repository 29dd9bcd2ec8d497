//! Store URLs: parsing `s3://bucket/prefix`, `file:///abs/path` and plain paths into a `StoreUrl`.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use super::StoreError;

/// Where a store lives. `Display` gives the canonical URL, which `parse` accepts back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A bucket and a key prefix without leading or trailing '/'. The bucket may be empty in
    /// `s3:///prefix`, to be filled in from `R2_BUCKET` when the store is opened.
    S3 { bucket: String, prefix: String },
    /// An absolute, lexically normalised directory.
    Local { root: PathBuf },
}

impl StoreUrl {
    /// Parses `s3://bucket/prefix`, `file:///abs/path` or a plain path; a relative path is made
    /// absolute against the current directory.
    pub fn parse(s: &str) -> Result<StoreUrl, StoreError> {
        if s.trim().is_empty() {
            return Err(invalid(s, "the URL is empty"));
        }
        match scheme_of(s) {
            Some(scheme) if scheme.eq_ignore_ascii_case("s3") => parse_s3(s),
            Some(scheme) if scheme.eq_ignore_ascii_case("file") => parse_file(s),
            Some(_) => Err(StoreError::UnknownScheme { url: s.to_owned() }),
            None => parse_plain_path(s),
        }
    }
}

/// The scheme of `scheme://…`, or of `s3:`/`file:` without slashes; `None` for a plain path.
fn scheme_of(s: &str) -> Option<&str> {
    let (scheme, rest) = s.split_once(':')?;
    let looks_like_scheme = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !looks_like_scheme {
        return None;
    }
    let known = scheme.eq_ignore_ascii_case("s3") || scheme.eq_ignore_ascii_case("file");
    (rest.starts_with("//") || known).then_some(scheme)
}

fn invalid(url: &str, reason: impl Into<String>) -> StoreError {
    StoreError::InvalidUrl { url: url.to_owned(), reason: reason.into() }
}

fn parse_s3(s: &str) -> Result<StoreUrl, StoreError> {
    let rest =
        s.get(3..).and_then(|r| r.strip_prefix("//")).ok_or_else(|| invalid(s, "expected s3://bucket/prefix"))?;
    if rest.contains(['?', '#']) {
        return Err(invalid(s, "query strings and fragments are not supported"));
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    check_bucket(s, bucket)?;
    let prefix = normalize_prefix(prefix).map_err(|e| invalid(s, e.to_string()))?;
    Ok(StoreUrl::S3 { bucket: bucket.to_owned(), prefix })
}

fn check_bucket(url: &str, bucket: &str) -> Result<(), StoreError> {
    if bucket.len() > 255 {
        return Err(invalid(url, "the bucket name is longer than 255 characters"));
    }
    if let Some(c) = bucket.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))) {
        return Err(invalid(url, format!("the bucket name contains {c:?}")));
    }
    Ok(())
}

/// A `.` or `..` segment in a key prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the prefix contains a {segment:?} segment")]
pub(crate) struct DotSegment {
    segment: &'static str,
}

/// Drops empty segments (`a//b/` → `a/b`) and refuses `.` and `..`, which S3 keeps literally
/// but a local directory would resolve.
pub(crate) fn normalize_prefix(prefix: &str) -> Result<String, DotSegment> {
    let mut segments = Vec::new();
    for segment in prefix.split('/').filter(|seg| !seg.is_empty()) {
        if let Some(dots) = [".", ".."].into_iter().find(|dots| segment == *dots) {
            return Err(DotSegment { segment: dots });
        }
        segments.push(segment);
    }
    Ok(segments.join("/"))
}

fn parse_file(s: &str) -> Result<StoreUrl, StoreError> {
    let url = url::Url::parse(s).map_err(|e| invalid(s, e.to_string()))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(s, "query strings and fragments are not supported"));
    }
    match url.host_str() {
        None | Some("") | Some("localhost") => {}
        Some(host) => return Err(invalid(s, format!("remote host {host:?} in a file URL"))),
    }
    let path = url.to_file_path().map_err(|()| invalid(s, "not an absolute local path"))?;
    Ok(StoreUrl::Local { root: normalize_path(&path) })
}

fn parse_plain_path(s: &str) -> Result<StoreUrl, StoreError> {
    let absolute = std::path::absolute(s).map_err(|e| invalid(s, format!("cannot make the path absolute: {e}")))?;
    Ok(StoreUrl::Local { root: normalize_path(&absolute) })
}

/// Lexical normalisation of an absolute path: drops `.`, resolves `..`, drops a trailing '/'.
fn normalize_path(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            StoreUrl::Local { root } => match url::Url::from_file_path(root) {
                Ok(url) => write!(f, "{url}"),
                Err(()) => write!(f, "file://{}", root.display()),
            },
        }
    }
}

impl FromStr for StoreUrl {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StoreUrl::parse(s)
    }
}

impl serde::Serialize for StoreUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classify, ErrorClass};

    fn s3(bucket: &str, prefix: &str) -> StoreUrl {
        StoreUrl::S3 { bucket: bucket.into(), prefix: prefix.into() }
    }

    fn local(root: &str) -> StoreUrl {
        StoreUrl::Local { root: root.into() }
    }

    #[test]
    fn s3_urls() {
        assert_eq!(StoreUrl::parse("s3://b/p").unwrap(), s3("b", "p"));
        assert_eq!(StoreUrl::parse("s3://my-bucket").unwrap(), s3("my-bucket", ""));
        assert_eq!(StoreUrl::parse("s3://my-bucket/").unwrap(), s3("my-bucket", ""));
        assert_eq!(StoreUrl::parse("s3://b//a///c/").unwrap(), s3("b", "a/c"));
        assert_eq!(StoreUrl::parse("S3://b/backups/prod").unwrap(), s3("b", "backups/prod"));
    }

    #[test]
    fn s3_without_bucket_is_left_for_r2_bucket() {
        assert_eq!(StoreUrl::parse("s3:///backups").unwrap(), s3("", "backups"));
        assert_eq!(StoreUrl::parse("s3://").unwrap(), s3("", ""));
    }

    #[test]
    fn bad_s3_urls_are_usage_errors() {
        for bad in ["s3:bucket", "s3://b/p?x=1", "s3://b/p#f", "s3://b/a/../c", "s3://b/./c", "s3://b c/x"] {
            let err = StoreUrl::parse(bad).unwrap_err();
            assert!(matches!(err, StoreError::InvalidUrl { .. }), "{bad}: {err:?}");
            assert_eq!(err.class(), ErrorClass::Usage);
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn file_urls() {
        assert_eq!(StoreUrl::parse("file:///var/backups").unwrap(), local("/var/backups"));
        assert_eq!(StoreUrl::parse("file:///var/backups/").unwrap(), local("/var/backups"));
        assert_eq!(StoreUrl::parse("file://localhost/srv/x").unwrap(), local("/srv/x"));
        assert_eq!(StoreUrl::parse("FILE:///a%20b/c").unwrap(), local("/a b/c"));
        assert_eq!(StoreUrl::parse("file:/srv/x").unwrap(), local("/srv/x"));
        assert_eq!(StoreUrl::parse("file:///a/./b/../c").unwrap(), local("/a/c"));
    }

    #[test]
    fn file_url_with_remote_host_is_rejected() {
        let err = StoreUrl::parse("file://server/share").unwrap_err();
        assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err:?}");
        assert_eq!(err.class(), ErrorClass::Usage);
    }

    #[test]
    fn plain_paths() {
        assert_eq!(StoreUrl::parse("/srv/backups/").unwrap(), local("/srv/backups"));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(StoreUrl::parse("backups/local").unwrap(), StoreUrl::Local { root: cwd.join("backups/local") });
        assert_eq!(StoreUrl::parse("./x/../y").unwrap(), StoreUrl::Local { root: cwd.join("y") });
        // A colon inside a plain path is not a scheme.
        assert_eq!(StoreUrl::parse("/srv/a:b").unwrap(), local("/srv/a:b"));
    }

    #[test]
    fn unknown_schemes_are_usage_errors_that_list_the_accepted_forms() {
        for bad in ["gs://x", "ftp://", "http://example.com/b", "azure://c/p"] {
            let err = StoreUrl::parse(bad).unwrap_err();
            assert!(matches!(err, StoreError::UnknownScheme { .. }), "{bad}: {err:?}");
            assert_eq!(err.class(), ErrorClass::Usage);
            let message = err.to_string();
            assert!(message.contains(bad), "{message}");
            assert!(message.contains("s3://bucket/prefix"), "{message}");
            assert!(message.contains("file:///"), "{message}");
        }
    }

    #[test]
    fn empty_url_is_invalid() {
        let err = StoreUrl::parse("").unwrap_err();
        assert!(matches!(err, StoreError::InvalidUrl { .. }));
    }

    #[test]
    fn display_is_canonical_and_round_trips() {
        for (input, canonical) in [
            ("s3://b/p/q/", "s3://b/p/q"),
            ("s3://b", "s3://b"),
            ("file:///srv/x/", "file:///srv/x"),
            ("/srv/a b", "file:///srv/a%20b"),
        ] {
            let url = StoreUrl::parse(input).unwrap();
            assert_eq!(url.to_string(), canonical);
            assert_eq!(StoreUrl::parse(canonical).unwrap(), url);
        }
    }

    #[test]
    fn serializes_as_the_canonical_string() {
        let url = StoreUrl::parse("s3://b/p").unwrap();
        assert_eq!(serde_json::to_string(&url).unwrap(), "\"s3://b/p\"");
    }
}
