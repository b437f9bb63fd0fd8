//! The service side of Alibaba Cloud's RPC signatures: rebuilds the canonical strings from a
//! request as received and checks the signature it carries. Written from the algorithm's
//! description rather than shared with any client's signer, so the two check each other.
//!
//! V1 (`HMAC-SHA1`, `SignatureVersion=1.0`): every parameter but `Signature`, sorted by name and
//! encoded, forms the canonical query; the string to sign is `METHOD&%2F&enc(canonical query)`;
//! the signature is base64 HMAC-SHA1 keyed with `secret + "&"`.
//!
//! V3 (`ACS3-HMAC-SHA256`): the canonical request is method, `/`, canonical query, one
//! `name:value` line per signed header, the signed-header list and the payload hash; the string to
//! sign is the algorithm name and the canonical request's hex SHA-256; the signature is hex
//! HMAC-SHA256 keyed with the bare secret.

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// The V3 algorithm name: first word of the `Authorization` header and of the string to sign.
pub(crate) const V3_ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Percent-encodes UTF-8 bytes: `A-Z a-z 0-9 - _ . ~` stay, every other byte becomes `%XX` with
/// upper-case hex (so a space is `%20`, never `+`).
pub(crate) fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// `enc(name)=enc(value)` joined by `&`, in byte-wise name order (a `BTreeMap<String, _>` iterates
/// in exactly that order).
pub(crate) fn canonical_query(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The V1 string to sign over `params`, which must not include `Signature`.
pub(crate) fn v1_string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonical_query(params))
    )
}

/// Whether `given` (base64, as sent) is the V1 signature of `string_to_sign` under `secret`.
pub(crate) fn v1_verifies(secret: &str, string_to_sign: &str, given: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(given) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes()) else {
        return false;
    };
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&given).is_ok()
}

/// The V3 canonical request. `headers` maps each signed header's lower-case name to its value as
/// received; values are trimmed here, as the algorithm requires.
pub(crate) fn v3_canonical_request(
    method: &str,
    query: &BTreeMap<String, String>,
    headers: &BTreeMap<String, String>,
    hashed_payload: &str,
) -> String {
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{}\n", value.trim()))
        .collect();
    let signed_headers = headers
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(";");
    format!(
        "{method}\n/\n{}\n{canonical_headers}\n{signed_headers}\n{hashed_payload}",
        canonical_query(query)
    )
}

/// Lower-case hex SHA-256: the payload hash and the hashed canonical request.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The V3 string to sign for a canonical request.
pub(crate) fn v3_string_to_sign(canonical_request: &str) -> String {
    format!(
        "{V3_ALGORITHM}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// Whether `given` (hex, as sent) is the V3 signature of `string_to_sign` under `secret`.
pub(crate) fn v3_verifies(secret: &str, string_to_sign: &str, given: &str) -> bool {
    let Ok(given) = hex::decode(given) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&given).is_ok()
}

/// The published test vectors, reproduced with the official SDKs: canonical strings and
/// signatures are compared verbatim.
#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf";
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const DIGEST: &str = "sha256:8f0fbdb41d3d1ade4ffdf21558443f4c03342010563bb8c43ccc09594d50abcd";

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Checks that `signature` verifies and that one flipped character no longer does.
    fn assert_v1(secret: &str, string_to_sign: &str, signature: &str) {
        assert!(v1_verifies(secret, string_to_sign, signature));
        assert!(!v1_verifies(
            secret,
            &format!("{string_to_sign}x"),
            signature
        ));
        assert!(!v1_verifies(
            &format!("{secret}x"),
            string_to_sign,
            signature
        ));
    }

    fn assert_v3(secret: &str, string_to_sign: &str, signature: &str) {
        assert!(v3_verifies(secret, string_to_sign, signature));
        assert!(!v3_verifies(
            secret,
            &format!("{string_to_sign}x"),
            signature
        ));
        assert!(!v3_verifies(
            &format!("{secret}x"),
            string_to_sign,
            signature
        ));
    }

    #[test]
    fn v1_a_get_describe_regions() {
        let p = params(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", NONCE),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]);
        let sts = v1_string_to_sign("GET", &p);
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_v1("testsecret", &sts, "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
    }

    fn v1_c_params() -> BTreeMap<String, String> {
        params(&[
            ("Action", "DescribeImageLatestScanTask"),
            ("Format", "json"),
            ("Version", "2018-12-03"),
            ("Timestamp", "2024-05-01T08:00:00Z"),
            ("SignatureNonce", NONCE),
            ("Digest", DIGEST),
            ("SecurityToken", "CAIS+test/token=="),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("AccessKeyId", "testid"),
        ])
    }

    #[test]
    fn v1_c_post_with_security_token() {
        let sts = v1_string_to_sign("POST", &v1_c_params());
        assert_eq!(
            sts,
            "POST&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeImageLatestScanTask%26Digest%3Dsha256%253A8f0fbdb41d3d1ade4ffdf21558443f4c03342010563bb8c43ccc09594d50abcd%26Format%3Djson%26SecurityToken%3DCAIS%252Btest%252Ftoken%253D%253D%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2024-05-01T08%253A00%253A00Z%26Version%3D2018-12-03"
        );
        assert_v1("testsecret", &sts, "yQWHHDn4vvXffajuMnAmE3dm5Ik=");
    }

    #[test]
    fn v1_c_the_method_is_signed() {
        let get = v1_string_to_sign("GET", &v1_c_params());
        assert_v1("testsecret", &get, "sNv7L5DVXA+kkm2iZQ1d/lAS9nE=");
        // The POST signature does not open the same parameters sent as GET.
        assert!(!v1_verifies(
            "testsecret",
            &get,
            "yQWHHDn4vvXffajuMnAmE3dm5Ik="
        ));
    }

    #[test]
    fn v1_d_percent_encoding() {
        let p = params(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeImageLatestScanTask"),
            ("Digest", "a b*c~d/e+f=g&h:中"),
            ("Format", "JSON"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "n1"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2024-05-01T08:00:00Z"),
            ("Version", "2018-12-03"),
        ]);
        assert_eq!(
            canonical_query(&p),
            "AccessKeyId=testid&Action=DescribeImageLatestScanTask&Digest=a%20b%2Ac~d%2Fe%2Bf%3Dg%26h%3A%E4%B8%AD&Format=JSON&SignatureMethod=HMAC-SHA1&SignatureNonce=n1&SignatureVersion=1.0&Timestamp=2024-05-01T08%3A00%3A00Z&Version=2018-12-03"
        );
        assert_v1(
            "testsecret",
            &v1_string_to_sign("GET", &p),
            "oqhcm1zY69RFYvSWQGxf6gybfU4=",
        );
    }

    #[test]
    fn v1_e_sts_assume_role() {
        let p = params(&[
            ("Action", "AssumeRole"),
            ("Format", "JSON"),
            ("Version", "2015-04-01"),
            ("DurationSeconds", "3600"),
            ("RoleArn", "acs:ram::123456789012****:role/adminrole"),
            ("RoleSessionName", "exporter"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2024-05-01T08:00:00Z"),
            ("SignatureNonce", NONCE),
            ("AccessKeyId", "testid"),
        ]);
        assert_v1(
            "testsecret",
            &v1_string_to_sign("GET", &p),
            "o/qRGetn0BahsAIagd7KcEIKBz0=",
        );
    }

    #[test]
    fn v3_a_documentation_example() {
        let query = params(&[
            (
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            ),
            ("RegionId", "cn-shanghai"),
        ]);
        let headers = params(&[
            ("host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            ("x-acs-content-sha256", EMPTY_SHA256),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-version", "2014-05-26"),
        ]);
        let canonical = v3_canonical_request("POST", &query, &headers, EMPTY_SHA256);
        assert!(canonical.contains(
            "\nhost;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\n"
        ));
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        assert_v3(
            "YourAccessKeySecret",
            &v3_string_to_sign(&canonical),
            "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0",
        );
    }

    fn v3_b_headers() -> BTreeMap<String, String> {
        params(&[
            ("host", "tds.ap-southeast-1.aliyuncs.com"),
            ("x-acs-action", "DescribeImageLatestScanTask"),
            ("x-acs-content-sha256", EMPTY_SHA256),
            ("x-acs-date", "2024-05-01T08:00:00Z"),
            ("x-acs-security-token", "CAIS+test/token=="),
            ("x-acs-signature-nonce", NONCE),
            ("x-acs-version", "2018-12-03"),
        ])
    }

    #[test]
    fn v3_b_this_operation_with_sts() {
        let query = params(&[("Digest", DIGEST)]);
        let canonical = v3_canonical_request("POST", &query, &v3_b_headers(), EMPTY_SHA256);
        assert_eq!(
            canonical,
            "POST
/
Digest=sha256%3A8f0fbdb41d3d1ade4ffdf21558443f4c03342010563bb8c43ccc09594d50abcd
host:tds.ap-southeast-1.aliyuncs.com
x-acs-action:DescribeImageLatestScanTask
x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
x-acs-date:2024-05-01T08:00:00Z
x-acs-security-token:CAIS+test/token==
x-acs-signature-nonce:3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf
x-acs-version:2018-12-03

host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "9fa3f4a2dd79a3285b099ee18104f25bb8c00720413d510846865647d0c8551c"
        );
        assert_v3(
            "testsecret",
            &v3_string_to_sign(&canonical),
            "5b3c80e7f17066195a418631dbfe99852f4bfcefbdae3dcfd4f3e0c0ca6d0aad",
        );
    }

    #[test]
    fn v3_header_values_are_trimmed() {
        let query = params(&[("Digest", DIGEST)]);
        let mut padded = v3_b_headers();
        for value in padded.values_mut() {
            *value = format!(" {value}\t");
        }
        assert_eq!(
            v3_canonical_request("POST", &query, &padded, EMPTY_SHA256),
            v3_canonical_request("POST", &query, &v3_b_headers(), EMPTY_SHA256)
        );
    }

    #[test]
    fn empty_payload_hash_and_undecodable_signatures() {
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
        assert!(!v1_verifies("testsecret", "x", "not base64!"));
        assert!(!v3_verifies("testsecret", "x", "not hex"));
        assert!(!v3_verifies("testsecret", "x", ""));
    }
}
