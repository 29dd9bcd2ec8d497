//! Checks against the application's and the website's HTTP responses.

use std::time::Duration;

use reqwest::header::HeaderMap;

use super::{Finding, Request};

fn client(req: &Request, follow_redirects: bool) -> Result<reqwest::Client, Finding> {
    // The check's own timeout reports a hang; the client's is only a backstop behind it.
    let mut b =
        reqwest::Client::builder().timeout(req.timeout + Duration::from_secs(5)).user_agent("opsbook promote-check");
    if !follow_redirects {
        b = b.redirect(reqwest::redirect::Policy::none());
    }
    if let Some(path) = &req.ca_file {
        let pem = std::fs::read(path).map_err(|e| Finding::fail(format!("--ca-file {}: {e}", path.display()), ""))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| Finding::fail(format!("--ca-file {}: {e}", path.display()), "give a PEM certificate"))?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| Finding::fail(format!("HTTP client: {e}"), ""))
}

fn web_url(req: &Request) -> Option<&str> {
    req.checklist.web_url.as_deref().or(req.checklist.app_url.as_deref())
}

fn join(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
}

async fn get(req: &Request, url: &str) -> Result<reqwest::Response, Finding> {
    let c = client(req, true)?;
    c.get(url).send().await.map_err(|e| unreachable(req, &format!("GET {url}"), &e))
}

/// Why a request got no answer, and what to do about it. reqwest's own message ("error sending
/// request") keeps the cause in its source chain: a refused connection, a timeout, an untrusted
/// certificate.
fn unreachable(req: &Request, what: &str, e: &reqwest::Error) -> Finding {
    let (cause, fix) = describe(req, e);
    Finding::fail(format!("{what}: {cause}"), fix)
}

/// The cause (the source chain, classified) and the fix for a failed request.
fn describe(req: &Request, e: &reqwest::Error) -> (String, String) {
    let mut chain: Vec<String> = Vec::new();
    let mut io_kind = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind = io_kind.or(Some(io.kind()));
        }
        let text = s.to_string();
        // hyper-util's "client error (Connect)" says nothing; its connector repeats its
        // source's text in its own.
        if !text.starts_with("client error (") && !chain.iter().any(|c| c.contains(&text)) {
            chain.retain(|c| !text.contains(c.as_str()));
            chain.push(text);
        }
        source = s.source();
    }
    let detail = chain.join(": ");
    let lower = detail.to_ascii_lowercase();
    if lower.contains("certificate") {
        let fix = match &req.ca_file {
            None => "pass --ca-file with the CA that signed the server's certificate (an internal or staging CA), or serve a publicly trusted certificate".to_string(),
            Some(ca) => format!(
                "the server's certificate does not verify against --ca-file {}: give the CA that signed it, or fix the certificate (chain, host name, expiry)",
                ca.display()
            ),
        };
        return (format!("TLS certificate not trusted ({detail})"), fix);
    }
    if e.is_timeout() || io_kind == Some(std::io::ErrorKind::TimedOut) {
        return (format!("timed out ({detail})"), "make it answer from here, or raise --timeout".into());
    }
    match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => {
            (format!("connection refused ({detail})"), "start the service, or check the URL's host and port".into())
        }
        _ if lower.contains("dns error") => {
            (format!("host name not resolved ({detail})"), "check the URL's host name and the DNS from here".into())
        }
        _ if detail.is_empty() => (e.to_string(), "make it reachable from here".into()),
        _ => (detail, "make it reachable from here".into()),
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Directives of a CSP header, lowercase names → source lists.
fn directives(policy: &str) -> Vec<(String, Vec<String>)> {
    policy
        .split(';')
        .filter_map(|d| {
            let mut parts = d.split_whitespace();
            let name = parts.next()?.to_ascii_lowercase();
            Some((name, parts.map(|s| s.to_string()).collect()))
        })
        .collect()
}

/// Problems of a Content-Security-Policy, by directive.
pub(super) fn csp_problems(policy: &str) -> Vec<String> {
    let d = directives(policy);
    let get = |name: &str| d.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let default = get("default-src");
    let mut problems = Vec::new();
    let script = get("script-src").or_else(|| default.clone());
    match &script {
        None => problems.push("no script-src or default-src: scripts from anywhere".to_string()),
        Some(src) => {
            let has_nonce_or_hash = src.iter().any(|s| {
                s.starts_with("'nonce-")
                    || s.starts_with("'sha256-")
                    || s.starts_with("'sha384-")
                    || s.starts_with("'sha512-")
            });
            if src.iter().any(|s| s == "'unsafe-inline'") && !has_nonce_or_hash {
                problems.push("script-src allows 'unsafe-inline' without a nonce or hash".into());
            }
            if src.iter().any(|s| s == "'unsafe-eval'") {
                problems.push("script-src allows 'unsafe-eval'".into());
            }
            if src.iter().any(|s| s == "*") {
                problems.push("script-src allows * (any host)".into());
            }
            for scheme in ["http:", "https:", "data:", "blob:"] {
                if src.iter().any(|s| s == scheme) {
                    problems.push(format!("script-src allows the whole scheme {scheme}"));
                }
            }
        }
    }
    let default_none = default.as_ref().is_some_and(|v| v.iter().any(|s| s == "'none'"));
    if get("object-src").is_none() && !default_none {
        problems.push("object-src is missing (set object-src 'none')".into());
    }
    if get("base-uri").is_none() {
        problems.push("base-uri is missing (set base-uri 'self' or 'none')".into());
    }
    problems
}

/// At most this many same-origin assets referenced by the page are fetched for the csp check.
const MAX_ASSETS: usize = 5;

/// Same-origin scripts, links (stylesheets, preloads) and frames an HTML page references, in
/// page order, without repeats, at most [`MAX_ASSETS`].
pub(super) fn asset_urls(page: &url::Url, html: &str) -> Vec<url::Url> {
    let re = regex_lite::Regex::new(r#"(?is)<(?:script|link|iframe)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["']"#)
        .expect("valid asset pattern");
    let mut out: Vec<url::Url> = Vec::new();
    for cap in re.captures_iter(html) {
        let Ok(u) = page.join(&cap[1]) else { continue };
        if u.origin() != page.origin() || out.contains(&u) {
            continue;
        }
        out.push(u);
        if out.len() == MAX_ASSETS {
            break;
        }
    }
    out
}

/// Content types a browser renders as a document under the response's own policy.
fn is_document(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    ["text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml"].contains(&mime.as_str())
}

/// How one asset's response stands: documents (HTML, SVG) need their own strict enforced
/// policy, because the page's policy does not reach them; scripts and styles run under the
/// page's policy, so a weaker policy of their own is only a warning (it applies when the asset is
/// opened directly, and shows that path is configured apart from the page).
fn asset_finding(path: &str, content_type: &str, policy: Option<&str>) -> (super::Status, String) {
    use super::Status;
    let problems = policy.map(csp_problems);
    match (is_document(content_type), policy, problems) {
        (true, None, _) => (Status::Fail, format!("{path} ({content_type}) is a document without an enforced CSP")),
        (true, Some(_), Some(p)) if !p.is_empty() => {
            (Status::Fail, format!("{path} ({content_type}) is a document with a weaker CSP: {}", p.join(", ")))
        }
        (false, Some(_), Some(p)) if !p.is_empty() => (
            Status::Warn,
            format!("{path} sends a weaker CSP than the page ({}); it runs under the page's policy", p.join(", ")),
        ),
        (true, Some(_), _) => (Status::Pass, format!("{path}: own strict CSP")),
        (false, _, _) => (Status::Pass, format!("{path}: under the page's policy")),
    }
}

/// The csp findings of the page's same-origin assets, fetched concurrently. An asset that does
/// not answer 2xx is noted, not judged: a broken reference is not a policy problem.
async fn check_assets(req: &Request, c: &reqwest::Client, assets: &[url::Url]) -> Vec<(super::Status, String)> {
    let checks = assets.iter().map(|asset| async move {
        let path = asset.path();
        match c.get(asset.as_str()).send().await {
            Ok(r) if r.status().is_success() => {
                let h = r.headers();
                let content_type = header(h, "content-type").unwrap_or("no content type");
                asset_finding(path, content_type, header(h, "content-security-policy"))
            }
            Ok(r) => (super::Status::Pass, format!("{path}: HTTP {} (not checked)", r.status().as_u16())),
            Err(e) => (super::Status::Pass, format!("{path}: {} (not checked)", describe(req, &e).0)),
        }
    });
    futures::future::join_all(checks).await
}

pub(super) async fn csp(req: &Request) -> Finding {
    use super::Status;
    let Some(url) = web_url(req) else { return Finding::skip("no --web-url or --app-url") };
    let c = match client(req, true) {
        Ok(c) => c,
        Err(f) => return f,
    };
    let resp = match c.get(url).send().await {
        Ok(r) => r,
        Err(e) => return unreachable(req, &format!("GET {url}"), &e),
    };
    let page = resp.url().clone();
    let h = resp.headers();
    let Some(policy) = header(h, "content-security-policy").map(String::from) else {
        if header(h, "content-security-policy-report-only").is_some() {
            return Finding::fail(
                "only Content-Security-Policy-Report-Only is sent: nothing is enforced",
                "send the policy as Content-Security-Policy once the reports are clean",
            );
        }
        return Finding::fail(
            format!("{url} sends no Content-Security-Policy"),
            "send a CSP with script-src, object-src 'none' and base-uri",
        );
    };
    let html = resp.text().await.unwrap_or_default();
    let problems = csp_problems(&policy);
    if !problems.is_empty() {
        return Finding::fail(
            problems.join("; "),
            "use nonces or hashes instead of 'unsafe-inline', drop 'unsafe-eval' and wildcards, add object-src 'none' and base-uri 'self'",
        );
    }
    let assets = check_assets(req, &c, &asset_urls(&page, &html)).await;
    let worst = assets.iter().map(|(s, _)| *s).min().unwrap_or(Status::Pass);
    let notes: Vec<&str> = assets.iter().map(|(_, n)| n.as_str()).collect();
    let evidence = format!(
        "enforced: {policy}; {} same-origin asset(s) checked{}{}",
        assets.len(),
        if notes.is_empty() { "" } else { ": " },
        notes.join("; ")
    );
    match worst {
        Status::Fail => Finding::fail(
            evidence,
            "send the page's Content-Security-Policy on every HTML and SVG response (set it for all paths in the app or the proxy)",
        ),
        Status::Warn => Finding::warn(evidence, "serve assets with the page's policy, or with none"),
        _ => Finding::pass(evidence),
    }
}

pub(super) async fn hsts(req: &Request) -> Finding {
    let Some(url) = web_url(req) else { return Finding::skip("no --web-url or --app-url") };
    let parsed = match url::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return Finding::fail(format!("{url}: {e}"), "give a full URL"),
    };
    let c = match client(req, false) {
        Ok(c) => c,
        Err(f) => return f,
    };
    if parsed.scheme() == "http" {
        // Served over plain HTTP: it must at least redirect to HTTPS on the same host.
        let resp = match c.get(url).send().await {
            Ok(r) => r,
            Err(e) => return unreachable(req, &format!("GET {url}"), &e),
        };
        // Location may be relative (`/path`): resolve it against the request URL.
        let location = header(resp.headers(), "location").and_then(|l| parsed.join(l).ok());
        let target = location
            .filter(|l| resp.status().is_redirection() && l.scheme() == "https" && l.host_str() == parsed.host_str());
        let Some(target) = target else {
            return Finding::fail(
                format!(
                    "{url} is served without HTTPS (HTTP {} and no redirect to https://{})",
                    resp.status().as_u16(),
                    parsed.host_str().unwrap_or("")
                ),
                "serve the site over HTTPS and redirect plain HTTP to it",
            );
        };
        // The redirect's target is where the browser goes next: its HSTS header is the one that counts.
        let mut finding = hsts_header(req, &c, target.as_str()).await;
        finding.evidence = format!("{url} redirects to {target}; {}", finding.evidence);
        return finding;
    }
    hsts_header(req, &c, url).await
}

async fn hsts_header(req: &Request, c: &reqwest::Client, url: &str) -> Finding {
    let resp = match c.get(url).send().await {
        Ok(r) => r,
        Err(e) => return unreachable(req, &format!("GET {url}"), &e),
    };
    let Some(value) = header(resp.headers(), "strict-transport-security") else {
        return Finding::fail(
            format!("{url} sends no Strict-Transport-Security"),
            "send Strict-Transport-Security: max-age=31536000; includeSubDomains; preload",
        );
    };
    let lower = value.to_ascii_lowercase();
    let max_age = lower
        .split(';')
        .find_map(|p| p.trim().strip_prefix("max-age=").and_then(|v| v.trim_matches('"').parse::<u64>().ok()))
        .unwrap_or(0);
    if max_age < 31_536_000 || !lower.contains("includesubdomains") {
        return Finding::fail(
            format!("Strict-Transport-Security: {value}"),
            "use max-age ≥ 31536000 with includeSubDomains",
        );
    }
    if !lower.contains("preload") {
        return Finding::warn(
            format!("Strict-Transport-Security: {value} (no preload)"),
            "add preload and submit the domain to hstspreload.org",
        );
    }
    Finding::pass(format!("Strict-Transport-Security: {value}"))
}

const FOREIGN_ORIGIN: &str = "https://promote-check.invalid";

pub(super) async fn cors(req: &Request) -> Finding {
    let Some(app) = req.checklist.app_url.as_deref() else { return Finding::skip("no --app-url") };
    let c = match client(req, true) {
        Ok(c) => c,
        Err(f) => return f,
    };
    let mut problems = Vec::new();
    let mut evidence = Vec::new();
    let simple = c.get(app).header("Origin", FOREIGN_ORIGIN).send().await;
    let preflight = c
        .request(reqwest::Method::OPTIONS, app)
        .header("Origin", FOREIGN_ORIGIN)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type, authorization")
        .send()
        .await;
    for (what, resp) in [("GET", simple), ("preflight", preflight)] {
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return unreachable(req, &format!("{what} {app}"), &e),
        };
        let allow = header(resp.headers(), "access-control-allow-origin").unwrap_or("").to_string();
        let creds =
            header(resp.headers(), "access-control-allow-credentials").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        evidence.push(format!("{what}: Allow-Origin '{allow}'{}", if creds { ", credentials" } else { "" }));
        if allow == FOREIGN_ORIGIN {
            problems.push(format!("{what} reflects a foreign Origin"));
        }
        if allow == "*" && creds {
            problems.push(format!("{what} combines Allow-Origin * with credentials"));
        }
    }
    // The configured allowlist: each listed origin (up to 5) should be answered with itself.
    let mut refused = Vec::new();
    let mut wildcard = evidence.iter().any(|e| e.contains("Allow-Origin '*'"));
    for origin in req.checklist.cors_allowlist.iter().take(5) {
        if let Ok(r) = c.get(app).header("Origin", origin.as_str()).send().await {
            let allow = header(r.headers(), "access-control-allow-origin").unwrap_or("");
            wildcard |= allow == "*";
            if allow != origin && allow != "*" {
                refused.push(format!("{origin} (got '{allow}')"));
            }
        }
    }
    if !problems.is_empty() {
        Finding::fail(
            format!("{} ({})", problems.join("; "), evidence.join("; ")),
            "answer only origins on an explicit allowlist",
        )
    } else if !refused.is_empty() {
        Finding::warn(
            format!("allowlisted origins are refused: {} ({})", refused.join(", "), evidence.join("; ")),
            "add them to the app's CORS allowlist, or remove them from [promote] cors_allowlist",
        )
    } else if wildcard && !req.checklist.cors_allowlist.is_empty() {
        Finding::warn(
            format!(
                "the app answers Allow-Origin * to any origin although an allowlist is configured ({})",
                evidence.join("; ")
            ),
            "answer each allowlisted origin by name instead of *",
        )
    } else {
        Finding::pass(evidence.join("; "))
    }
}

pub(super) async fn security_headers(req: &Request) -> Finding {
    let Some(url) = web_url(req) else { return Finding::skip("no --web-url or --app-url") };
    let resp = match get(req, url).await {
        Ok(r) => r,
        Err(f) => return f,
    };
    let h = resp.headers();
    let mut missing = Vec::new();
    if !header(h, "x-content-type-options").is_some_and(|v| v.eq_ignore_ascii_case("nosniff")) {
        missing.push("X-Content-Type-Options: nosniff");
    }
    let frame_ancestors =
        header(h, "content-security-policy").is_some_and(|p| p.to_ascii_lowercase().contains("frame-ancestors"));
    let xfo =
        header(h, "x-frame-options").is_some_and(|v| ["deny", "sameorigin"].contains(&v.to_ascii_lowercase().as_str()));
    if !frame_ancestors && !xfo {
        missing.push("CSP frame-ancestors or X-Frame-Options");
    }
    match header(h, "referrer-policy") {
        None => missing.push("Referrer-Policy"),
        Some(v) if v.eq_ignore_ascii_case("unsafe-url") => missing.push("a Referrer-Policy other than unsafe-url"),
        Some(_) => {}
    }
    if missing.is_empty() {
        Finding::pass("X-Content-Type-Options, framing protection and Referrer-Policy present")
    } else {
        Finding::fail(
            format!("missing: {}", missing.join(", ")),
            "send the missing headers from the app or the proxy in front of it",
        )
    }
}

pub(super) async fn otel(req: &Request) -> Finding {
    if req.env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Finding::pass("disabled (OTEL_SDK_DISABLED=true)");
    }
    let endpoint =
        req.env("OTEL_EXPORTER_OTLP_ENDPOINT").map(String::from).or_else(|| req.checklist.otel_endpoint.clone());
    let Some(endpoint) = endpoint else { return Finding::pass("disabled (no OTLP endpoint configured)") };
    let c = match client(req, false) {
        Ok(c) => c,
        Err(f) => return f,
    };
    match c.get(&endpoint).send().await {
        // Any HTTP answer (OTLP collectors say 404/405 to GET) means it is up.
        Ok(r) => Finding::pass(format!("{endpoint} answers (HTTP {})", r.status().as_u16())),
        Err(e) => {
            let (cause, fix) = describe(req, &e);
            Finding::fail(format!("{endpoint}: {cause}"), format!("{fix}; or set OTEL_SDK_DISABLED=true"))
        }
    }
}

pub(super) async fn rate_limits(req: &Request) -> Finding {
    let (Some(app), Some(path)) = (req.checklist.app_url.as_deref(), req.checklist.rate_limit_path.as_deref()) else {
        return Finding::skip("no rate_limit_path in the profile's [promote] table");
    };
    let burst = req.checklist.rate_limit_burst.unwrap_or(100);
    let c = match client(req, true) {
        Ok(c) => c,
        Err(f) => return f,
    };
    let url = join(app, path);
    for n in 1..=burst {
        match c.get(&url).send().await {
            Ok(r) if r.status().as_u16() == 429 => {
                let h = r.headers();
                let hint = header(h, "retry-after")
                    .map(|v| format!("Retry-After: {v}"))
                    .or_else(|| header(h, "ratelimit-reset").map(|v| format!("RateLimit-Reset: {v}")));
                return match hint {
                    Some(hint) => Finding::pass(format!("429 after {n} requests, {hint}")),
                    None => Finding::warn(
                        format!("429 after {n} requests without Retry-After"),
                        "send Retry-After or RateLimit headers with 429",
                    ),
                };
            }
            Ok(_) => {}
            Err(e) => return unreachable(req, &format!("GET {url}"), &e),
        }
    }
    Finding::fail(
        format!("{burst} requests to {url} and no 429"),
        "rate-limit the endpoint (and size the limit for production)",
    )
}

/// GET an app path (or its default): (url, status, body), or the finding that says why not.
async fn fetch(req: &Request, path: Option<&str>, default: &str) -> Result<(String, u16, String), Finding> {
    let Some(app) = req.checklist.app_url.as_deref() else { return Err(Finding::skip("no --app-url")) };
    let url = join(app, path.unwrap_or(default));
    let resp = get(req, &url).await?;
    let status = resp.status().as_u16();
    Ok((url, status, resp.text().await.unwrap_or_default()))
}

pub(super) async fn health(req: &Request) -> Finding {
    let (url, status, body) = match fetch(req, req.checklist.health_path.as_deref(), "/health").await {
        Ok(r) => r,
        Err(f) => return f,
    };
    if status != 200 {
        return Finding::fail(
            format!("{url}: HTTP {status}"),
            "make the health endpoint answer 200 when the app is ready",
        );
    }
    if let Some(want) = &req.checklist.health_body {
        if !body.contains(want.as_str()) {
            return Finding::fail(
                format!("{url}: body does not contain '{want}'"),
                "check what the health endpoint reports",
            );
        }
    }
    Finding::pass(format!("{url}: HTTP 200"))
}

pub(super) async fn metrics(req: &Request) -> Finding {
    let (url, status, body) = match fetch(req, req.checklist.metrics_path.as_deref(), "/metrics").await {
        Ok(r) => r,
        Err(f) => return f,
    };
    let samples = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter(|l| l.rsplit_once(' ').is_some_and(|(_, v)| v.trim().parse::<f64>().is_ok()))
        .count();
    if status == 200 && samples > 0 {
        Finding::pass(format!("{url}: {samples} samples"))
    } else {
        Finding::fail(
            format!("{url}: HTTP {status}, {samples} Prometheus samples"),
            "serve Prometheus text format at the metrics path",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{asset_finding, asset_urls, csp_problems};
    use crate::promote::Status;

    #[test]
    fn assets_are_same_origin_bounded_and_unique() {
        let page = url::Url::parse("https://shop.example/app/").unwrap();
        let html = r#"<script src="/a.js"></script><SCRIPT defer SRC='b.js'></SCRIPT>
            <link rel="stylesheet" href="/a.js"><script src="https://cdn.example/x.js"></script>
            <iframe src="/embed"></iframe><link href="/1.css"><link href="/2.css"><link href="/3.css">"#;
        let got: Vec<String> = asset_urls(&page, html).iter().map(|u| u.path().to_string()).collect();
        assert_eq!(got, ["/a.js", "/app/b.js", "/embed", "/1.css", "/2.css"]);
    }

    #[test]
    fn documents_need_their_own_policy_scripts_do_not() {
        let strict = "default-src 'self'; object-src 'none'; base-uri 'self'";
        assert_eq!(asset_finding("/e", "text/html; charset=utf-8", None).0, Status::Fail);
        assert_eq!(asset_finding("/e", "image/svg+xml", Some("script-src *")).0, Status::Fail);
        assert_eq!(asset_finding("/e", "text/html", Some(strict)).0, Status::Pass);
        assert_eq!(asset_finding("/a.js", "text/javascript", None).0, Status::Pass);
        let (s, note) = asset_finding("/a.js", "text/javascript", Some("script-src 'unsafe-eval'"));
        assert_eq!(s, Status::Warn);
        assert!(note.contains("'unsafe-eval'"), "{note}");
    }

    #[test]
    fn csp_rules() {
        assert!(csp_problems("default-src 'self'; script-src 'self' 'nonce-abc'; object-src 'none'; base-uri 'self'")
            .is_empty());
        let p = csp_problems("script-src 'self' 'unsafe-inline' 'unsafe-eval' https:");
        assert!(p.iter().any(|x| x.contains("unsafe-inline")));
        assert!(p.iter().any(|x| x.contains("unsafe-eval")));
        assert!(p.iter().any(|x| x.contains("https:")));
        assert!(p.iter().any(|x| x.contains("object-src")));
        assert!(p.iter().any(|x| x.contains("base-uri")));
        assert!(csp_problems("default-src 'none'; script-src 'self' 'unsafe-inline' 'sha256-xyz'; base-uri 'none'")
            .is_empty());
    }
}
