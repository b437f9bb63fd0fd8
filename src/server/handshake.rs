//! TLS handshake failures: why a client was refused, logged at warn without letting a flood of
//! bad clients flood the log.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustls::{CertificateError, Error as TlsError};

/// At most one warning per this period; the failures in between are counted in the next one.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);

/// Rate-limited warnings for failed handshakes, shared by every listener.
#[derive(Debug, Default)]
pub(crate) struct HandshakeLog(Mutex<LogState>);

#[derive(Debug, Default)]
struct LogState {
    last: Option<Instant>,
    suppressed: u64,
}

impl HandshakeLog {
    /// Logs the failure of a handshake with `peer`, unless a line went out less than
    /// [`LOG_EVERY`] ago.
    pub(crate) fn failed(&self, peer: SocketAddr, error: &io::Error) {
        let Some(reason) = describe(error) else {
            tracing::debug!(%peer, error = %error, "connection closed before the TLS handshake");
            return;
        };
        if let Some(suppressed) = self.due(Instant::now()) {
            tracing::warn!(%peer, reason = %reason, suppressed_since_last = suppressed, "TLS handshake failed");
        }
    }

    /// Logs a handshake that did not finish in time.
    pub(crate) fn timed_out(&self, peer: SocketAddr, budget: Duration) {
        if let Some(suppressed) = self.due(Instant::now()) {
            let reason = format!("no complete handshake within {budget:?}");
            tracing::warn!(%peer, reason = %reason, suppressed_since_last = suppressed, "TLS handshake failed");
        }
    }

    /// `Some(failures left unlogged since the last line)` when a line is due at `now`.
    fn due(&self, now: Instant) -> Option<u64> {
        let mut st = self.0.lock();
        if st.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            st.suppressed = st.suppressed.saturating_add(1);
            return None;
        }
        st.last = Some(now);
        Some(std::mem::take(&mut st.suppressed))
    }
}

/// Why a handshake failed, in words an operator can act on; `None` when the client closed the
/// connection before saying anything (a TCP probe or a port scan, not a TLS problem).
pub(crate) fn describe(error: &io::Error) -> Option<String> {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<TlsError>())
    else {
        return (error.kind() != io::ErrorKind::UnexpectedEof).then(|| error.to_string());
    };
    Some(match tls {
        TlsError::InvalidCertificate(CertificateError::Other(other))
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::UnsupportedCertVersion)
            ) =>
        {
            "the client certificate is X.509 v1 (as `openssl x509 -req` writes without \
             extensions); rustls accepts only v3 certificates, unlike the Go exporter-toolkit: \
             reissue it with an extensions file (for example `basicConstraints=CA:FALSE` and \
             `extendedKeyUsage=clientAuth`)"
                .to_owned()
        }
        TlsError::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "invalid peer certificate: UnknownIssuer (the client certificate is not signed by a \
             CA in client_ca_file)"
                .to_owned()
        }
        TlsError::AlertReceived(alert) => {
            format!(
                "the client aborted the handshake with alert {alert:?}; it may not trust the server certificate"
            )
        }
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::OtherError;
    use std::sync::Arc;

    fn wrapped(e: TlsError) -> io::Error {
        // How tokio-rustls hands rustls's error to the caller.
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn a_v1_client_certificate_is_named_as_such() {
        let e = wrapped(TlsError::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(webpki::Error::UnsupportedCertVersion)),
        )));
        let reason = describe(&e).expect("worth a warning");
        assert!(
            reason.starts_with("the client certificate is X.509 v1"),
            "{reason}"
        );
        assert!(reason.contains("rustls accepts only v3"), "{reason}");
        // Another error inside Other is not mistaken for it.
        let e = wrapped(TlsError::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(webpki::Error::BadDer)),
        )));
        assert!(!describe(&e).expect("reason").contains("v1"));
    }

    #[test]
    fn reasons() {
        let e = wrapped(TlsError::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert_eq!(
            describe(&e).as_deref(),
            Some(
                "invalid peer certificate: UnknownIssuer (the client certificate is not signed \
                 by a CA in client_ca_file)"
            )
        );
        let e = wrapped(TlsError::NoCertificatesPresented);
        assert_eq!(describe(&e).as_deref(), Some("peer sent no certificates"));
        let e = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(describe(&e), None);
        let e = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(describe(&e).as_deref(), Some("reset"));
    }

    #[test]
    fn one_line_per_period_with_the_count_of_the_rest() {
        let log = HandshakeLog::default();
        let t0 = Instant::now();
        assert_eq!(log.due(t0), Some(0));
        for s in 1..=5 {
            assert_eq!(log.due(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(log.due(t0 + LOG_EVERY), Some(5));
        assert_eq!(log.due(t0 + LOG_EVERY + Duration::from_secs(1)), None);
        assert_eq!(log.due(t0 + LOG_EVERY * 3), Some(1));
    }
}
