//! What a verified client certificate says about its holder: the subject's common names and
//! the URI subject alternative names (SPIFFE IDs and the like), read once per connection.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The names of a client certificate's leaf that `mtls_subjects` can match, already in the
/// configured form: `CN=<common name>` and the URI SANs as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerIdentity {
    names: Vec<String>,
}

impl PeerIdentity {
    /// Reads the leaf certificate (DER). rustls has verified the chain by the time this runs;
    /// a certificate x509-parser cannot read yields no names (matches nothing).
    pub fn from_der(der: &[u8]) -> PeerIdentity {
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return PeerIdentity::default();
        };
        let mut names: Vec<String> = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(|cn| format!("CN={cn}"))
            .collect();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::URI(uri) = name {
                    names.push((*uri).to_owned());
                }
            }
        }
        PeerIdentity { names }
    }

    /// An identity with these names (tests, and callers that parsed the certificate
    /// themselves).
    pub fn with_names(names: Vec<String>) -> PeerIdentity {
        PeerIdentity { names }
    }

    /// The first of `subjects` this certificate carries.
    pub fn matching<'a>(&self, subjects: &'a [String]) -> Option<&'a str> {
        subjects
            .iter()
            .find(|s| self.names.iter().any(|n| n == *s))
            .map(String::as_str)
    }

    /// Every name, in certificate order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_and_uri_sans_are_read() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "billing-client");
        params.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://example.org/billing").expect("ia5"),
        )];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let id = PeerIdentity::from_der(cert.der());
        assert_eq!(
            id.names(),
            ["CN=billing-client", "spiffe://example.org/billing"]
        );
        let subjects = vec![
            "CN=other".to_owned(),
            "spiffe://example.org/billing".to_owned(),
        ];
        assert_eq!(id.matching(&subjects), Some("spiffe://example.org/billing"));
        assert_eq!(id.matching(&["CN=billing".to_owned()]), None);
        assert!(
            PeerIdentity::from_der(b"not a certificate")
                .names()
                .is_empty()
        );
    }
}
