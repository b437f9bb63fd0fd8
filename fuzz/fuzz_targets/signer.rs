//! The signer with arbitrary parameters, headers, keys, times and nonces: no panics, and the
//! canonical query decodes back to exactly the parameters it was built from.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use sas_image_scan_exporter::Credentials;
use sas_image_scan_exporter::signing::{self, RpcCall, SignatureVersion};

#[derive(Arbitrary, Debug)]
struct Input {
    v3: bool,
    method: String,
    host: String,
    action: String,
    version: String,
    params: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    payload: Vec<u8>,
    key_id: String,
    secret: String,
    token: Option<String>,
    unix_seconds: i64,
    nonce: String,
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .expect("encoded UTF-8 decodes")
        .into_owned()
}

/// Splits a canonical query back into its parameters.
fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').expect("every pair has =");
            (decode(k), decode(v))
        })
        .collect()
}

fn check_encoded(q: &str) {
    assert!(
        q.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~%=&".contains(&b)),
        "unencoded byte in {q:?}"
    );
}

fuzz_target!(|input: Input| {
    let query = signing::canonical_query(&input.params);
    check_encoded(&query);
    assert_eq!(parse_query(&query), input.params);

    let v1 = signing::v1_string_to_sign(&input.method, &input.params);
    let _ = signing::v1_signature(&input.secret, &v1);
    let (canonical, _signed_headers) = signing::v3_canonical_request(
        &input.method,
        &input.params,
        &input.headers,
        &signing::sha256_hex(&input.payload),
    );
    let _ = signing::v3_signature(&input.secret, &signing::v3_string_to_sign(&canonical));

    let creds = Credentials::new(input.key_id, input.secret, input.token, None);
    let call = RpcCall {
        method: &input.method,
        host: &input.host,
        action: &input.action,
        version: &input.version,
        params: input.params.clone(),
    };
    let now = DateTime::from_timestamp(input.unix_seconds, 0).unwrap_or_default();
    let version = if input.v3 {
        SignatureVersion::V3
    } else {
        SignatureVersion::V1
    };
    let signed = signing::sign(version, &call, &creds, now, &input.nonce);
    check_encoded(&signed.query);
    let sent = parse_query(&signed.query);
    match version {
        // V1 carries everything in the query, the signature last added.
        SignatureVersion::V1 => {
            assert!(sent.contains_key("Signature"));
            for (k, v) in &input.params {
                if !matches!(
                    k.as_str(),
                    "Action"
                        | "Version"
                        | "Format"
                        | "AccessKeyId"
                        | "SignatureMethod"
                        | "SignatureVersion"
                        | "SignatureNonce"
                        | "Timestamp"
                        | "SecurityToken"
                        | "Signature"
                ) {
                    assert_eq!(sent.get(k), Some(v));
                }
            }
        }
        // V3 sends the business parameters only, and signs in headers.
        SignatureVersion::V3 => {
            assert_eq!(sent, input.params);
            assert!(signed.headers.iter().any(|(k, _)| k == "authorization"));
        }
    }
});
