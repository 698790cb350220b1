//! `secmesh ca init|issue|revoke|crl`: the development CA.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use secmesh_core::{SpiffeId, TrustDomain};
use secmesh_tls::ca::{Ca, CaError};

use crate::io::{
    REJECTED, USAGE, fail, path_shown, print_json, read_text, refuse_existing, write_private,
    write_public,
};

/// `secmesh ca ...`
#[derive(Subcommand, Debug)]
pub(crate) enum CaCommand {
    /// Create a CA (key and certificate) for a trust domain in a directory.
    Init {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// The trust domain, e.g. `mesh.test`.
        #[arg(long)]
        trust_domain: TrustDomain,
        /// Replace the CA the directory holds with a new one (its key, certificate, trust
        /// domain and the lists of what it issued and revoked). Without it, a directory that
        /// holds a CA is refused.
        #[arg(long)]
        force: bool,
        /// Print `{"dir", "cert", "trust_domain"}` instead of the certificate's path.
        #[arg(long)]
        json: bool,
    },
    /// Issue an X.509-SVID and its private key.
    Issue(IssueArgs),
    /// Revoke a certificate this CA issued.
    Revoke {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// The certificate's serial (hex, as `ca issue` prints it).
        #[arg(long, conflicts_with = "cert", required_unless_present = "cert")]
        serial: Option<String>,
        /// Or the certificate file (PEM).
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// Write the CRL of everything revoked.
    Crl {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// Where to write the CRL (PEM).
        #[arg(long)]
        out: PathBuf,
        /// How long the CRL is valid, in days.
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
}

/// `secmesh ca issue` options.
#[derive(Args, Debug)]
pub(crate) struct IssueArgs {
    /// The CA directory.
    #[arg(long)]
    dir: PathBuf,
    /// The workload's SPIFFE ID, in the CA's trust domain.
    #[arg(long)]
    spiffe_id: SpiffeId,
    /// Where to write the certificate (PEM).
    #[arg(long)]
    cert_out: PathBuf,
    /// Where to write the private key (PKCS#8 PEM, mode 0600).
    #[arg(long)]
    key_out: PathBuf,
    /// Validity in days.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Replace the certificate and key files if they exist (without it, an existing file is
    /// refused and nothing is issued).
    #[arg(long)]
    force: bool,
    /// Print `{"serial", "spiffe_id", "cert", "key", "days"}` instead of the serial.
    #[arg(long)]
    json: bool,
}

/// The files of a CA directory (see `secmesh_tls::ca`).
const CA_FILES: [&str; 3] = ["ca.key", "ca.crt", "trust-domain"];
/// What a CA issued and revoked: meaningless for a new CA.
const CA_LISTS: [&str; 2] = ["issued.log", "revoked.log"];

/// `ca init --force` over an existing CA: the new CA is made beside it, in a fresh directory
/// inside `dir`, then its files are renamed over the old ones (each file is replaced whole;
/// if making the new CA fails, the old one is untouched) and the old CA's lists are removed.
fn replace_ca(dir: &Path, td: TrustDomain) -> Result<(), CaError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CaError::Io { path, source }
    };
    let fresh = dir.join(format!(".ca-init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&fresh); // a leftover of a crashed run with this pid
    let made = Ca::init(&fresh, td).and_then(|_| {
        for name in CA_LISTS {
            match std::fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io(&dir.join(name))(e));
                }
                _ => {}
            }
        }
        for name in CA_FILES {
            std::fs::rename(fresh.join(name), dir.join(name)).map_err(io(&dir.join(name)))?;
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&fresh);
    made
}

fn ca_fail(e: CaError) -> ExitCode {
    match e {
        // The request was understood and refused.
        CaError::WrongTrustDomain { .. } | CaError::UnknownSerial(_) => fail(REJECTED, e),
        _ => fail(USAGE, e),
    }
}

/// The serial of a PEM certificate, lowercase hex.
fn serial_of(path: &std::path::Path) -> Result<String, String> {
    use base64::Engine as _;
    let pem = read_text(path)?;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| format!("{} is not a PEM certificate", path_shown(path)))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|_| format!("{} is not a certificate", path_shown(path)))?;
    Ok(cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

pub(crate) fn run(cmd: CaCommand) -> ExitCode {
    match cmd {
        CaCommand::Init {
            dir,
            trust_domain,
            force,
            json,
        } => {
            let td = trust_domain.as_str().to_owned();
            let made = if force && dir.join("ca.key").exists() {
                replace_ca(&dir, trust_domain)
            } else {
                Ca::init(&dir, trust_domain).map(drop)
            };
            match made {
                Ok(()) if json => {
                    print_json(&serde_json::json!({
                        "dir": dir.to_string_lossy(),
                        "cert": dir.join("ca.crt").to_string_lossy(),
                        "trust_domain": td,
                    }));
                    ExitCode::SUCCESS
                }
                Ok(()) => {
                    println!("{}", path_shown(&dir.join("ca.crt")));
                    ExitCode::SUCCESS
                }
                Err(e @ CaError::State(_)) => fail(USAGE, format!("{e}; --force replaces it")),
                Err(e) => ca_fail(e),
            }
        }
        CaCommand::Issue(a) => {
            if let Err(e) = refuse_existing(&[&a.key_out, &a.cert_out], a.force) {
                return fail(USAGE, e);
            }
            let ca = match Ca::open(&a.dir) {
                Ok(c) => c,
                Err(e) => return ca_fail(e),
            };
            match ca.issue(&a.spiffe_id, a.days) {
                Ok(issued) => match write_private(&a.key_out, issued.key_pem.as_bytes(), a.force)
                    .and_then(|()| write_public(&a.cert_out, issued.cert_pem.as_bytes(), a.force))
                {
                    Ok(()) if a.json => {
                        print_json(&serde_json::json!({
                            "serial": issued.serial,
                            "spiffe_id": a.spiffe_id.as_str(),
                            "cert": a.cert_out.to_string_lossy(),
                            "key": a.key_out.to_string_lossy(),
                            "days": a.days,
                        }));
                        ExitCode::SUCCESS
                    }
                    Ok(()) => {
                        println!("{}", issued.serial);
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(USAGE, e),
                },
                Err(e) => ca_fail(e),
            }
        }
        CaCommand::Revoke { dir, serial, cert } => {
            let serial = match (serial, cert) {
                (Some(s), _) => s,
                (None, Some(c)) => match serial_of(&c) {
                    Ok(s) => s,
                    Err(e) => return fail(USAGE, e),
                },
                (None, None) => return fail(USAGE, "give --serial or --cert"),
            };
            match Ca::open(&dir).and_then(|ca| ca.revoke(&serial)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => ca_fail(e),
            }
        }
        CaCommand::Crl { dir, out, days } => match Ca::open(&dir).and_then(|ca| ca.crl(days)) {
            // A CRL is reissued in place: replacing it is what it is for.
            Ok(pem) => match write_public(&out, pem.as_bytes(), true) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(USAGE, e),
            },
            Err(e) => ca_fail(e),
        },
    }
}
