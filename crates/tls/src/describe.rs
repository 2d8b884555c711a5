//! Human-readable causes of upstream failures, for logs, events and the admin API.

use std::error::Error;
use std::fmt;

/// Displays an error and its sources as one line, `outer: inner: innermost`, skipping a
/// source whose text its outer error already shows. A TLS failure anywhere in the chain is
/// shown alone, prefixed `tls: ` (`tls: invalid peer certificate: Expired`): the wrappers
/// around it ("client error (Connect)") say nothing more.
///
/// Error texts never carry header values or credentials: upstream URLs with userinfo are
/// refused at config time, and no error built from a request includes its headers.
pub struct Describe<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(tls) = find_tls(self.0) {
            return write!(f, "tls: {tls}");
        }
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            let text = e.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
                shown = text;
            }
            source = e.source();
        }
        Ok(())
    }
}

/// The rustls error in `err`'s chain, directly or inside `io::Error`s (tokio-rustls reports
/// handshake failures as an `io::Error` wrapping it, which hyper-rustls may wrap again; an
/// `io::Error`'s `source()` skips the error it wraps, so the walk goes through `get_ref`).
fn find_tls<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// [`Describe`] cut to at most `max` bytes (on a character boundary, `…` marking the cut), for
/// text that is kept (events, account health).
pub fn describe_bounded(err: &(dyn Error + 'static), max: usize) -> String {
    let mut text = Describe(err).to_string();
    if text.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrap(&'static str, Option<Box<dyn Error + Send + Sync>>);
    impl fmt::Display for Wrap {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Error for Wrap {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    #[test]
    fn a_tls_failure_is_named_alone() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        // hyper-rustls wraps tokio-rustls's `io::Error` in another one.
        let io = std::io::Error::other(io);
        let err = Wrap("client error (Connect)", Some(Box::new(io)));
        assert_eq!(
            Describe(&err).to_string(),
            "tls: invalid peer certificate: Expired"
        );
    }

    #[test]
    fn other_chains_are_joined_without_repeats() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = Wrap(
            "client error (Connect)",
            Some(Box::new(Wrap("tcp connect error", Some(Box::new(io))))),
        );
        assert_eq!(
            Describe(&err).to_string(),
            "client error (Connect): tcp connect error: connection refused"
        );
        let same = Wrap("connection refused", Some(Box::new(Wrap("refused", None))));
        assert_eq!(Describe(&same).to_string(), "connection refused");
    }

    #[test]
    fn bounded_text_is_cut_on_a_char_boundary() {
        let err = Wrap("ééééé", None);
        let text = describe_bounded(&err, 6);
        assert!(text.len() <= 6, "{text}");
        assert_eq!(text, "é…");
        assert_eq!(describe_bounded(&err, 100), "ééééé");
    }
}
