//! A test PKI made with rcgen: certificate authorities and certificates they sign,
//! written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The secret key the TLS suites seal device key files with (the one of
/// `tests/device_secrets.rs`).
pub const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A device's `[tenants.devices.security]` table: TLS required, with these files.
pub fn security(ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "[tenants.devices.security]\nrequire_tls = true\ntls = {{ ca_file = \"{}\", cert_file = \"{}\", key_file = \"{}\" }}\n",
        ca.display(),
        cert.display(),
        key.display()
    )
}

/// Writes `pem` as `dir/name`.
pub fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pem).expect("write pem");
    p
}

/// A CA; writes `{name}-ca.pem`.
pub fn authority(dir: &Path, name: &str) -> (CertifiedIssuer<'static, KeyPair>, PathBuf) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
    let path = write(dir, &format!("{name}-ca.pem"), &ca.pem());
    (ca, path)
}

/// A certificate signed by `ca`; writes `{name}.pem` and `{name}.key`.
pub fn issue(
    dir: &Path,
    ca: &CertifiedIssuer<'static, KeyPair>,
    name: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (PathBuf, PathBuf) {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &**ca).expect("sign");
    (
        write(dir, &format!("{name}.pem"), &cert.pem()),
        write(dir, &format!("{name}.key"), &key.serialize_pem()),
    )
}
