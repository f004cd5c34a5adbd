//! Hostile input, table-driven: forged and broken JWTs, tenant names built to confuse, JSON
//! built to hurt, path and query tricks. Every one must be a 4xx problem document, none a 5xx.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, StatusCode};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sqlx::Executor;

use crate::support::{signing_key_pem, spawn_app};

struct Case {
    name: String,
    method: Method,
    path: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    /// The exact status when the rule is that precise; otherwise any 4xx.
    expect: Option<StatusCode>,
}

fn case(name: impl Into<String>, method: Method, path: impl Into<String>) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.into(),
        headers: Vec::new(),
        content_type: None,
        body: Vec::new(),
        expect: None,
    }
}

impl Case {
    fn header(mut self, name: &'static str, value: impl AsRef<[u8]>) -> Case {
        self.headers.push((name, value.as_ref().to_vec()));
        self
    }
    fn json(mut self, body: impl Into<Vec<u8>>) -> Case {
        self.content_type = Some("application/json");
        self.body = body.into();
        self
    }
    fn content_type(mut self, value: &'static str) -> Case {
        self.content_type = Some(value);
        self
    }
    fn expect(mut self, status: StatusCode) -> Case {
        self.expect = Some(status);
        self
    }
}

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn b64url_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let values: Vec<u32> =
        text.bytes().filter_map(|c| ALPHABET.iter().position(|a| *a == c)).map(|p| p as u32).collect();
    let mut out = Vec::new();
    for chunk in values.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, v)| n | (v << (18 - 6 * i)));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// A token from raw parts: any header, any claims, any signature bytes.
fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!("{}.{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()), b64url(signature))
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[tokio::test]
async fn every_hostile_request_is_a_4xx_problem_document_and_the_service_stays_healthy() {
    let app = spawn_app().await;
    let alpha = app.create_tenant("alpha").await;
    let bravo = app.create_tenant("bravo").await;
    // A quota no case can reach: this test is about answers, not limits.
    let mut su = app.superuser_connection().await;
    su.execute("UPDATE tenants SET rate_limit_per_second = 100000, rate_limit_burst = 100000").await.expect("quota");
    let token = app.owner_token(&alpha).await;
    let bravo_token = app.owner_token(&bravo).await;

    // The real signing key, to forge tokens that are validly signed but wrong otherwise.
    let pem = signing_key_pem();
    let signing = EncodingKey::from_ed_pem(pem.as_bytes()).expect("signing key");
    let private = SigningKey::from_pkcs8_pem(&pem).expect("private key");
    let public_pem = private.verifying_key().to_public_key_pem(Default::default()).expect("public pem");
    let public_raw = private.verifying_key().to_bytes();
    let kid = jsonwebtoken::decode_header(&token).expect("header").kid.expect("kid");
    let real: Value =
        serde_json::from_slice(&b64url_decode(token.split('.').nth(1).expect("payload"))).expect("claims");
    let claims = |changes: Value| {
        let mut c = json!({
            "sub": real["sub"], "tid": real["tid"], "role": real["role"], "iat": now(), "exp": now() + 600,
            "iss": "rowguard", "aud": "rowguard:tenant", "jti": uuid::Uuid::now_v7(),
        });
        if let (Some(map), Some(changes)) = (c.as_object_mut(), changes.as_object()) {
            for (k, v) in changes {
                if v.is_null() {
                    map.remove(k);
                } else {
                    map.insert(k.clone(), v.clone());
                }
            }
        }
        c
    };
    let signed = |claims: Value| {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, &claims, &signing).expect("sign")
    };
    let hmac = |alg: Algorithm, secret: &[u8]| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, &claims(json!({})), &EncodingKey::from_secret(secret)).expect("hmac")
    };

    // The forge itself must work, or every case below would pass for the wrong reason.
    let control = app.call_as(&signed(claims(json!({}))), "alpha", Method::GET, "/v1/me", None).await;
    assert_eq!(control.status, StatusCode::OK, "a correctly forged token is accepted: {}", control.body);

    let unauthorized = StatusCode::UNAUTHORIZED;
    let mut tokens: Vec<(&str, String, StatusCode)> = vec![
        ("expired", signed(claims(json!({"exp": now() - 3600}))), unauthorized),
        ("not yet valid", signed(claims(json!({"nbf": now() + 3600}))), unauthorized),
        ("wrong issuer", signed(claims(json!({"iss": "evil"}))), unauthorized),
        ("wrong audience", signed(claims(json!({"aud": "someone-else"}))), unauthorized),
        ("platform audience", signed(claims(json!({"aud": "rowguard:platform"}))), unauthorized),
        ("no exp", signed(claims(json!({"exp": null}))), unauthorized),
        ("no iss", signed(claims(json!({"iss": null}))), unauthorized),
        ("no aud", signed(claims(json!({"aud": null}))), unauthorized),
        ("no sub", signed(claims(json!({"sub": null}))), unauthorized),
        ("sub not a uuid", signed(claims(json!({"sub": "1 OR 1=1"}))), unauthorized),
        ("unknown role", signed(claims(json!({"role": "superuser"}))), unauthorized),
        ("exp as a string", signed(claims(json!({"exp": "tomorrow"}))), unauthorized),
        ("exp far beyond u64", signed(claims(json!({"exp": 1e30}))), unauthorized),
        ("another tenant's id", signed(claims(json!({"tid": bravo.id}))), StatusCode::FORBIDDEN),
        ("another tenant's token", bravo_token.clone(), StatusCode::FORBIDDEN),
        ("alg none", raw_token(&json!({"alg": "none", "typ": "JWT"}), &claims(json!({})), b""), unauthorized),
        ("alg None", raw_token(&json!({"alg": "None", "kid": kid}), &claims(json!({})), b""), unauthorized),
        (
            "alg NONE with a signature",
            raw_token(&json!({"alg": "NONE", "kid": kid}), &claims(json!({})), b"x"),
            unauthorized,
        ),
        ("HS256 keyed with the public key PEM", hmac(Algorithm::HS256, public_pem.as_bytes()), unauthorized),
        ("HS256 keyed with the raw public key", hmac(Algorithm::HS256, &public_raw), unauthorized),
        ("HS512 keyed with the public key PEM", hmac(Algorithm::HS512, public_pem.as_bytes()), unauthorized),
        (
            "RS256 header over an Ed25519 signature",
            {
                let good = signed(claims(json!({})));
                let sig = good.rsplit('.').next().unwrap_or_default().to_string();
                format!(
                    "{}.{}.{sig}",
                    b64url(json!({"alg": "RS256", "kid": kid}).to_string().as_bytes()),
                    good.split('.').nth(1).unwrap_or_default()
                )
            },
            unauthorized,
        ),
        (
            "unknown kid",
            {
                let mut header = Header::new(Algorithm::EdDSA);
                header.kid = Some("ed25519-0000000000000000".into());
                jsonwebtoken::encode(&header, &claims(json!({})), &signing).expect("sign")
            },
            unauthorized,
        ),
        (
            "no kid",
            jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims(json!({})), &signing).expect("sign"),
            unauthorized,
        ),
        (
            "signed by another key under our kid",
            {
                let other = SigningKey::from_bytes(&[7u8; 32]);
                let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&other).expect("der");
                let mut header = Header::new(Algorithm::EdDSA);
                header.kid = Some(kid.clone());
                jsonwebtoken::encode(&header, &claims(json!({})), &EncodingKey::from_ed_der(der.as_bytes()))
                    .expect("sign")
            },
            unauthorized,
        ),
        (
            "claims swapped under a valid signature",
            {
                let good = signed(claims(json!({})));
                let parts: Vec<&str> = good.split('.').collect();
                let forged =
                    b64url(claims(json!({"role": "owner", "sub": uuid::Uuid::now_v7()})).to_string().as_bytes());
                format!("{}.{forged}.{}", parts[0], parts[2])
            },
            unauthorized,
        ),
        (
            "bad signature",
            {
                let good = signed(claims(json!({})));
                let mut bytes = good.into_bytes();
                let i = bytes.len() - 20;
                bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
                String::from_utf8(bytes).expect("ascii")
            },
            unauthorized,
        ),
        (
            "truncated to two parts",
            token.rsplit_once('.').map(|(unsigned, _)| unsigned).unwrap_or_default().to_string(),
            unauthorized,
        ),
        (
            "empty signature",
            format!("{}.", token.rsplit_once('.').map(|(unsigned, _)| unsigned).unwrap_or_default()),
            unauthorized,
        ),
        ("truncated signature", token[..token.len() - 10].to_string(), unauthorized),
        ("one character", "e".into(), unauthorized),
        ("four parts", format!("{token}.extra"), unauthorized),
        ("not base64", "!!!.@@@.###".into(), unauthorized),
        ("header not an object", format!("{}.{}.", b64url(b"[1,2]"), b64url(b"{}")), unauthorized),
        ("oversized", format!("{}{}", token, "A".repeat(5000)), unauthorized),
        (
            "huge kid",
            {
                let mut header = Header::new(Algorithm::EdDSA);
                header.kid = Some("k".repeat(3000));
                jsonwebtoken::encode(&header, &claims(json!({})), &signing).expect("sign")
            },
            unauthorized,
        ),
    ];
    tokens.push(("a refresh-token-shaped string", "rt_".to_string() + &"a".repeat(64), unauthorized));

    let mut cases: Vec<Case> = Vec::new();
    for (name, jwt, status) in &tokens {
        cases.push(
            case(format!("jwt: {name}"), Method::GET, "/v1/contacts")
                .header("x-tenant", "alpha")
                .header("authorization", format!("Bearer {jwt}"))
                .expect(*status),
        );
    }
    for (name, value) in [
        ("empty bearer", "Bearer "),
        ("scheme only", "Bearer"),
        ("basic", "Basic YWxwaGE6cGFzcw=="),
        ("digest", "Digest username=\"x\""),
        ("two tokens", "Bearer a.b.c d.e.f"),
        ("lower-case scheme, garbage", "bearer x.y.z"),
    ] {
        cases.push(
            case(format!("authorization: {name}"), Method::GET, "/v1/me")
                .header("x-tenant", "alpha")
                .header("authorization", value)
                .expect(unauthorized),
        );
    }
    cases.push(
        case("authorization: not ASCII", Method::GET, "/v1/me")
            .header("x-tenant", "alpha")
            .header("authorization", b"Bearer \xc3\xa9t\xc3\xa9".as_slice())
            .expect(unauthorized),
    );

    // Tenant names: the header, then the host. Resolved ones fall to the missing token (401).
    let long_label = "a".repeat(1024);
    for (name, value) in [
        ("sql quote", "alpha' OR '1'='1".to_string()),
        ("sql comment", "alpha'--".into()),
        ("sql statement", "alpha; DROP TABLE tenants; --".into()),
        ("sql percent", "%".into()),
        ("sql underscore", "_____".into()),
        ("backslash", "al\\pha".into()),
        ("double quotes", "\"alpha\"".into()),
        ("1 KB label", long_label.clone()),
        ("uppercase", "ALPHA".into()),
        ("trailing dot", "alpha.".into()),
        ("with a port", "alpha:8080".into()),
        ("ip literal", "127.0.0.1".into()),
        ("ipv6 literal", "[::1]".into()),
        ("empty", String::new()),
        ("spaces", "   ".into()),
        ("dot dot", "..".into()),
        ("slash", "alpha/../bravo".into()),
        ("punycode", "xn--lpha-loa".into()),
        ("a host", "alpha.localhost".into()),
        ("uuid", alpha.id.to_string()),
    ] {
        cases.push(case(format!("x-tenant: {name}"), Method::GET, "/v1/contacts").header("x-tenant", value));
    }
    for (name, value) in [
        ("utf-8", "ålpha".as_bytes().to_vec()),
        ("latin-1 byte", b"\xe5lpha".to_vec()),
        ("emoji", "🦀".as_bytes().to_vec()),
    ] {
        cases.push(
            case(format!("x-tenant: {name}"), Method::GET, "/v1/contacts")
                .header("x-tenant", value)
                .expect(StatusCode::BAD_REQUEST),
        );
    }
    for (name, value) in [
        ("sql metacharacters", "alpha'--.localhost".to_string()),
        ("1 KB label", format!("{long_label}.localhost")),
        ("1 KB custom domain", format!("{long_label}.example.com")),
        ("uppercase", "ALPHA.LOCALHOST".into()),
        ("trailing dot", "alpha.localhost.".into()),
        ("two trailing dots", "alpha.localhost..".into()),
        ("port", "alpha.localhost:8080".into()),
        ("huge port", "alpha.localhost:99999999999".into()),
        ("letters for a port", "alpha.localhost:http".into()),
        ("ipv4 literal", "127.0.0.1".into()),
        ("ipv4 literal with port", "10.0.0.1:80".into()),
        ("ipv6 literal", "[::1]:8080".into()),
        ("broken ipv6", "[::1".into()),
        ("userinfo", "alpha.localhost@evil.example".into()),
        ("leading dot", ".localhost".into()),
        ("empty label", "..localhost".into()),
        ("nested subdomain", "a.b.c.localhost".into()),
        ("suffix trick", "alphalocalhost".into()),
        ("base domain of another name", "localhost.evil.example".into()),
        ("empty", String::new()),
    ] {
        cases.push(case(format!("host: {name}"), Method::GET, "/v1/contacts").header("host", value));
    }
    cases.push(case("host: utf-8", Method::GET, "/v1/contacts").header("host", "ålpha.localhost".as_bytes()));
    cases.push(
        case("host and header disagree", Method::GET, "/v1/contacts")
            .header("host", "alpha.localhost")
            .header("x-tenant", "bravo")
            .expect(StatusCode::BAD_REQUEST),
    );

    // JSON bodies, as alpha's owner.
    let bearer = format!("Bearer {token}");
    let authed = |c: Case| c.header("x-tenant", "alpha").header("authorization", bearer.clone());
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let huge_string = format!("{{\"name\":\"{}\",\"email\":\"a@b.co\"}}", "x".repeat(60_000));
    let ten_mb = vec![b'a'; 10 * 1024 * 1024];
    let ten_mb_json = format!("{{\"name\":\"{}\",\"email\":\"a@b.co\"}}", "x".repeat(10 * 1024 * 1024)).into_bytes();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("name is a number", br#"{"name":1,"email":"a@b.co"}"#.to_vec()),
        ("name is null", br#"{"name":null,"email":"a@b.co"}"#.to_vec()),
        ("name is an array", br#"{"name":["a"],"email":"a@b.co"}"#.to_vec()),
        ("name is an object", br#"{"name":{"$ne":null},"email":"a@b.co"}"#.to_vec()),
        ("email is a bool", br#"{"name":"a","email":true}"#.to_vec()),
        ("phone is a number", br#"{"name":"a","email":"a@b.co","phone":5551234}"#.to_vec()),
        ("organization is not a uuid", br#"{"name":"a","email":"a@b.co","organization_id":"nope"}"#.to_vec()),
        ("body is a string", br#""contact""#.to_vec()),
        ("body is a number", b"42".to_vec()),
        ("body is null", b"null".to_vec()),
        ("body is an array", br#"[{"name":"a","email":"a@b.co"}]"#.to_vec()),
        ("empty body", Vec::new()),
        ("whitespace body", b"   ".to_vec()),
        ("duplicate keys", br#"{"name":"a","name":"b","email":"a@b.co"}"#.to_vec()),
        (
            "unknown field",
            br#"{"name":"a","email":"a@b.co","tenant_id":"00000000-0000-0000-0000-000000000000"}"#.to_vec(),
        ),
        ("deeply nested arrays", deep_array.into_bytes()),
        ("deeply nested objects", deep_object.into_bytes()),
        ("huge string", huge_string.into_bytes()),
        ("10 MB of junk", ten_mb.clone()),
        ("10 MB of json", ten_mb_json.clone()),
        ("invalid utf-8", b"{\"name\":\"\xff\xfe\",\"email\":\"a@b.co\"}".to_vec()),
        ("NUL in a string", br#"{"name":"a\u0000b","email":"a@b.co"}"#.to_vec()),
        ("lone surrogate", br#"{"name":"\ud800","email":"a@b.co"}"#.to_vec()),
        ("control characters", br#"{"name":"a\u0007\u001b[31m","email":"a@b.co"}"#.to_vec()),
        ("number overflow", br#"{"name":"a","email":"a@b.co","phone":1e999}"#.to_vec()),
        ("trailing garbage", br#"{"name":"a","email":"a@b.co"} {}"#.to_vec()),
        ("byte order mark", b"\xef\xbb\xbf{\"name\":\"a\",\"email\":\"a@b.co\"}".to_vec()),
        ("email with newline", br#"{"name":"a","email":"a@b.co\nBcc: x@y.z"}"#.to_vec()),
        ("name of 201 characters", format!("{{\"name\":\"{}\",\"email\":\"a@b.co\"}}", "n".repeat(201)).into_bytes()),
    ];
    for (name, body) in bodies {
        cases.push(authed(case(format!("json: {name}"), Method::POST, "/v1/contacts")).json(body));
    }
    cases.push(authed(case("json: text/plain", Method::POST, "/v1/contacts")).content_type("text/plain"));
    cases.push(
        authed(case("json: utf-16 charset", Method::POST, "/v1/contacts"))
            .content_type("application/json; charset=utf-16"),
    );
    cases.push(
        authed(case("json: patch with wrong types", Method::PATCH, format!("/v1/contacts/{}", uuid::Uuid::now_v7())))
            .json(br#"{"name":5}"#.to_vec()),
    );
    for (name, body) in [
        ("10 MB", ten_mb_json),
        ("password is a number", br#"{"email":"owner@alpha.test","password":1}"#.to_vec()),
        ("email is an object", br#"{"email":{"a":1},"password":"x"}"#.to_vec()),
        (
            "huge password",
            format!("{{\"email\":\"a@alpha.test\",\"password\":\"{}\"}}", "p".repeat(15_000)).into_bytes(),
        ),
        ("sql in the email", br#"{"email":"' OR 1=1 --","password":"x"}"#.to_vec()),
        ("missing password", br#"{"email":"owner@alpha.test"}"#.to_vec()),
        ("deep nesting", format!("{}{}", "[".repeat(50_000), "]".repeat(50_000)).into_bytes()),
    ] {
        cases.push(
            case(format!("login: {name}"), Method::POST, "/v1/auth/login").header("x-tenant", "alpha").json(body),
        );
    }

    // Ids and paths.
    for path in [
        "/v1/contacts/not-a-uuid",
        "/v1/contacts/00000000-0000-0000-0000-00000000000g",
        "/v1/contacts/00000000-0000-0000-0000-0000000000000",
        "/v1/contacts/%00",
        "/v1/contacts/%ff%fe",
        "/v1/contacts/..%2F..%2Fetc%2Fpasswd",
        "/v1/contacts/../../etc/passwd",
        "/v1/contacts/%2e%2e/%2e%2e/users",
        "/v1/contacts//",
        "/v1//contacts",
        "/v1/contacts/1;DROP%20TABLE%20contacts",
        "/v1/contacts/'%20OR%20'1'='1",
        "/v1/CONTACTS",
        "/V1/contacts",
        "/v1/contacts/",
    ] {
        cases.push(authed(case(format!("path: {path}"), Method::GET, path)));
    }
    cases.push(authed(case("path: 8 KB id", Method::GET, format!("/v1/contacts/{}", "a".repeat(8192)))));
    cases.push(
        authed(case(
            "path: another tenant's-looking id",
            Method::GET,
            format!("/v1/contacts/{}", uuid::Uuid::now_v7()),
        ))
        .expect(StatusCode::NOT_FOUND),
    );
    cases.push(authed(case("path: delete a bad id", Method::DELETE, "/v1/contacts/nope")));
    cases.push(authed(case("method: TRACE", Method::TRACE, "/v1/contacts")));
    cases.push(authed(case("method: PUT", Method::PUT, "/v1/contacts")));

    // Query strings.
    for query in [
        "limit=abc",
        "limit=-1",
        "limit=0",
        "limit=1e3",
        "limit=99999999999999999999",
        "limit=",
        "limit=1&limit=2",
        "cursor=garbage",
        "cursor=%00",
        "cursor=' OR 1=1 --",
        "unknown=1",
        "limit=10&admin=true",
        "tenant_id=00000000-0000-0000-0000-000000000000",
        "%zz=1",
    ] {
        let path = format!("/v1/contacts?{}", query.replace(' ', "%20").replace('\'', "%27"));
        cases.push(authed(case(format!("query: {query}"), Method::GET, path)));
    }
    cases.push(authed(case("query: 5 KB cursor", Method::GET, format!("/v1/contacts?cursor={}", "A".repeat(5000)))));

    assert!(cases.len() >= 100, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (i, c) in cases.into_iter().enumerate() {
        let mut builder = Request::builder().method(c.method.clone()).uri(c.path.as_str());
        if !c.headers.iter().any(|(k, _)| *k == "host") {
            builder = builder.header("host", "localhost:8080");
        }
        for (k, v) in &c.headers {
            builder = builder.header(*k, HeaderValue::from_bytes(v).expect("a header value the client can send"));
        }
        if let Some(ct) = c.content_type {
            builder = builder.header("content-type", ct);
        }
        let mut request = builder.body(Body::from(c.body)).expect("request");
        // Each case from its own address, so the per-address limits do not decide the answer.
        let peer = SocketAddr::from(([198, 18, (i / 250) as u8, (i % 250) as u8 + 1], 40000));
        request.extensions_mut().insert(ConnectInfo(peer));
        let r = app.send(request).await;
        let problem = r.content_type() == "application/problem+json"
            && r.body["code"].as_str().is_some_and(|s| !s.is_empty())
            && r.body["status"] == r.status.as_u16()
            && r.body["request_id"].as_str().is_some_and(|s| !s.is_empty());
        let status_ok = match c.expect {
            Some(expected) => r.status == expected,
            None => r.status.is_client_error(),
        };
        let headers_ok =
            r.headers.contains_key("x-content-type-options") && r.headers.contains_key("content-security-policy");
        if !(problem && status_ok && headers_ok) {
            failures.push(format!("{}: {} {} (expected {:?})", c.name, r.status, r.body, c.expect));
        }
    }
    assert!(failures.is_empty(), "{} hostile cases misanswered:\n{}", failures.len(), failures.join("\n"));

    // Still healthy, and still serving the same tenant normally.
    assert_eq!(app.call(Method::GET, "/healthz", &[], None).await.status, StatusCode::OK);
    let ready = app.call(Method::GET, "/readyz", &[], None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    let created = app
        .call_as(
            &token,
            "alpha",
            Method::POST,
            "/v1/contacts",
            Some(json!({"name": "Still", "email": "still@ok.test"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let list = app.call_as(&token, "alpha", Method::GET, "/v1/contacts", None).await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1), "{}", list.body);
}
