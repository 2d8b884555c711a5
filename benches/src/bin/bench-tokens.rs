//! Writes an ES256 key set and one signed token per bench tenant, for the comparison harness's
//! client-authentication runs (`benches/ab.py --modes jwt`): `DIR/jwks.json` and
//! `DIR/tokens.txt` (line i is tenant `t{i}`'s token, valid for a day).
//!
//!     bench-tokens DIR TENANTS

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(n)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: bench-tokens DIR TENANTS");
    };
    let n: usize = n.parse()?;
    let dir = std::path::PathBuf::from(dir);
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let point = pair.public_key_raw();
    anyhow::ensure!(point.len() == 65, "uncompressed P-256 point");
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "bench-1",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    }]});
    std::fs::write(dir.join("jwks.json"), jwks.to_string())?;
    let key = jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("bench-1".to_owned());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 86_400;
    let mut out = String::new();
    for i in 0..n {
        let claims = serde_json::json!({
            "iss": "https://idp.bench.local/", "aud": "pairgate", "sub": format!("client-{i}"),
            "tenant": format!("t{i}"), "exp": exp,
        });
        out.push_str(&jsonwebtoken::encode(&header, &claims, &key)?);
        out.push('\n');
    }
    std::fs::write(dir.join("tokens.txt"), out)?;
    Ok(())
}
