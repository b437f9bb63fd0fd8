//! The AccessKeys the simulators accept, and minting of STS-style temporary ones.

use base64::Engine as _;

use crate::error::Rejection;

/// A key the simulator accepts. With `security_token` set, requests must carry exactly that token.
#[derive(Clone, Debug)]
pub struct SimKey {
    /// AccessKey ID.
    pub id: String,
    /// AccessKey secret.
    pub secret: String,
    /// STS token that must accompany this key, if any.
    pub security_token: Option<String>,
}

/// The key with this ID, or the service's answer for an unknown one.
pub(crate) fn find_key(keys: &[SimKey], id: &str) -> Result<SimKey, Rejection> {
    keys.iter().find(|k| k.id == id).cloned().ok_or_else(|| {
        Rejection::new(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        )
    })
}

/// A fresh set of STS-style credentials, as both STS and the metadata service hand out: the
/// token is base64 with `+`, `/` and `=`, so clients that mis-encode it fail visibly.
pub(crate) fn new_sts_key() -> SimKey {
    let random = |n: usize| -> Vec<u8> {
        (0..n.div_ceil(16))
            .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
            .take(n)
            .collect()
    };
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let alnum = |n: usize| -> String {
        b64(&random(n * 2))
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(n)
            .collect()
    };
    SimKey {
        id: format!("STS.NX{}", alnum(22)),
        secret: alnum(44),
        security_token: Some(format!("CAIS{}", b64(&random(180)))),
    }
}
